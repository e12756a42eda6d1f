"""The setup and verify pages (console URLs, open to a signed-in user who has not given a code)."""

from urllib.parse import quote

from django import forms
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from ops_console.twofactor import actions, policy, totp

ISSUER = "Ops Console"


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code from your authenticator app",
        max_length=12,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


def setup(request: HttpRequest, admin_site) -> HttpResponse:
    """Show a new secret for an authenticator app; make it the user's device once a code proves it."""
    device = policy.device_of(request.user)
    if device is not None and not policy.is_verified(request, device):
        # Replacing a device takes a code from it, or whoever has the password could.
        return policy.send_to("ops:two_factor_verify", reverse("ops:two_factor_setup"))
    secret = request.session.setdefault(policy.PENDING, totp.new_secret())
    form = CodeForm(request.POST or None)
    if form.is_valid():
        try:
            device = actions.do_confirm_totp_device(
                request, user=request.user, secret=secret, code=form.cleaned_data["code"]
            )
        except actions.CodeRefused as refused:
            form.add_error("code", str(refused))
        else:
            del request.session[policy.PENDING]  # never shown again
            policy.mark_verified(request, device)
            messages.success(request, "Two-factor sign-in is set up: you will be asked for a code at each sign-in.")
            return redirect(policy.safe_next(request))
    context = {"secret_groups": _grouped(secret), "uri": _otpauth_uri(request.user.get_username(), secret)}
    return _render(request, admin_site, "admin/two_factor/setup.html", "Set up two-factor sign-in", form, context)


def verify(request: HttpRequest, admin_site) -> HttpResponse:
    """Ask for the current code from the user's device; go on to ``next`` once it is right."""
    device = policy.device_of(request.user)
    if device is None:
        return policy.send_to("ops:two_factor_setup", policy.safe_next(request))
    if policy.is_verified(request, device):
        return redirect(policy.safe_next(request))
    form = CodeForm(request.POST or None)
    if form.is_valid():
        try:
            actions.do_verify_totp_code(request, device=device, code=form.cleaned_data["code"])
        except actions.CodeRefused as refused:
            if refused.locked:
                logout(request)
                messages.error(request, str(refused))
                return redirect_to_login(policy.safe_next(request), reverse("ops:login"))
            form.add_error("code", str(refused))
        else:
            policy.mark_verified(request, device)
            return redirect(policy.safe_next(request))
    return _render(request, admin_site, "admin/two_factor/verify.html", "Two-factor sign-in", form, {})


def _render(request, admin_site, template: str, title: str, form: CodeForm, extra: dict) -> TemplateResponse:
    context = {
        **admin_site.each_context(request),
        "title": title,
        "form": form,
        "next": policy.safe_next(request),
        "is_nav_sidebar_enabled": False,  # its links lead nowhere until the code is given
        **extra,
    }
    return TemplateResponse(request, template, context)


def _grouped(secret: str) -> str:
    """Return the secret in groups of four letters, easier to type into a phone."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _otpauth_uri(username: str, secret: str) -> str:
    """Return the Key URI that authenticator apps import (SHA-1, 6 digits, 30 s are its defaults)."""
    label = quote(f"{ISSUER}:{username}", safe=":")
    return f"otpauth://totp/{label}?secret={secret}&issuer={quote(ISSUER)}"

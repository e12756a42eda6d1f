"""The setup and verify pages (console URLs, open to a signed-in user who has not given a code)."""

from urllib.parse import quote

import segno
from django import forms
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.safestring import mark_safe

from ops_console.twofactor import actions, policy

ISSUER = "Ops Console"


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code from your authenticator app",
        max_length=12,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


class SetupForm(CodeForm):
    """The new app's code; when a device exists, also a fresh code from it (or a backup code)."""

    current_code = forms.CharField(
        label="Code from your current authenticator (or a backup code)",
        max_length=16,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}),
    )

    def __init__(self, *args, replacing: bool, **kwargs):
        super().__init__(*args, **kwargs)
        if not replacing:
            del self.fields["current_code"]


def setup(request: HttpRequest, admin_site) -> HttpResponse:
    """Show a new secret for an authenticator app (key, link and QR code); make it the user's device
    once a code proves it, and show ten single-use backup codes once.

    Replacing a device takes a fresh code from it, whatever the session gave before.
    """
    device = policy.device_of(request.user)
    if device is not None and not policy.is_verified(request, device):
        return policy.send_to("ops:two_factor_verify", reverse("ops:two_factor_setup"))
    secret = actions.pending_secret(request.user)
    form = SetupForm(request.POST or None, replacing=device is not None)
    if form.is_valid():
        try:
            if device is not None:
                field = "current_code"
                actions.do_verify_totp_code(request, device=device, code=form.cleaned_data["current_code"])
            field = "code"
            device, codes = actions.do_confirm_totp_device(
                request, user=request.user, secret=secret, code=form.cleaned_data["code"]
            )
        except actions.CodeRefused as refused:
            if refused.locked:
                logout(request)
                messages.error(request, str(refused))
                return redirect_to_login(policy.safe_next(request), reverse("ops:login"))
            form.add_error(field, str(refused))
        else:
            policy.mark_verified(request, device)
            context = {"codes": codes, "next": policy.safe_next(request)}
            template = "admin/two_factor/backup_codes.html"
            return _render(request, admin_site, template, "Your backup codes", None, context)
    uri = _otpauth_uri(request.user.get_username(), secret)
    context = {"secret_groups": _grouped(secret), "uri": uri, "qr_svg": _qr_svg(uri), "replacing": bool(device)}
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


def _qr_svg(uri: str) -> str:
    """Return the Key URI as an inline SVG QR code, drawn here (no script, no request to anyone)."""
    return mark_safe(segno.make(uri, error="m").svg_inline(scale=4, dark="#000", light="#fff"))  # noqa: S308


def _grouped(secret: str) -> str:
    """Return the secret in groups of four letters, easier to type into a phone."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _otpauth_uri(username: str, secret: str) -> str:
    """Return the Key URI that authenticator apps import (SHA-1, 6 digits, 30 s are its defaults)."""
    label = quote(f"{ISSUER}:{username}", safe=":")
    return f"otpauth://totp/{label}?secret={secret}&issuer={quote(ISSUER)}"

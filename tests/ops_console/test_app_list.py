"""The console's app list (sidebar, home page, app pages): Django's, made once per set of permissions."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import RequestFactory
from django.urls import reverse
from django.utils import translation

from ops_console import roles
from ops_console.admin_site import ops_site

pytestmark = pytest.mark.usefixtures("fast_passwords")


def _request(user):
    request = RequestFactory().get("/")
    request.user = user
    return request


def _fresh(user):
    """Return the user read again: Django keeps a user's permissions on the object it checked them on."""
    return get_user_model().objects.get(pk=user.pk)


def _djangos(user, app_label=None):
    """Return the app list as Django makes it, without the console's memo."""
    return admin.AdminSite.get_app_list(ops_site, _request(_fresh(user)), app_label)


def test_it_gives_every_persona_the_app_list_django_makes(personas, superuser):
    for user in [*personas.values(), superuser]:
        for app_label in [None, "clinical", "support"]:
            first = ops_site.get_app_list(_request(_fresh(user)), app_label)
            again = ops_site.get_app_list(_request(_fresh(user)), app_label)

            assert first == again == _djangos(user, app_label), (user.username, app_label)


def test_it_makes_the_list_once_for_users_with_the_same_permissions(personas, monkeypatch):
    built = []
    build = admin.AdminSite._build_app_dict

    def counting(site, request, label=None):
        built.append(request.user.username)
        return build(site, request, label)

    monkeypatch.setattr(admin.AdminSite, "_build_app_dict", counting)
    ops_site._app_lists.clear()
    second_agent = get_user_model().objects.create_user("support2", is_staff=True)
    second_agent.groups.add(Group.objects.get(name=roles.SUPPORT_AGENT))

    for user in [personas[roles.SUPPORT_AGENT], second_agent, personas[roles.SUPPORT_AGENT]]:
        ops_site.get_app_list(_request(_fresh(user)))
    ops_site.get_app_list(_request(_fresh(personas[roles.CLINICAL_OPS])))

    assert built == ["support", "clinops"]


def test_it_follows_a_users_new_role_at_once(support_agent):
    before = ops_site.get_app_list(_request(_fresh(support_agent)))
    support_agent.groups.add(Group.objects.get(name=roles.CLINICAL_OPS))

    after = ops_site.get_app_list(_request(_fresh(support_agent)))

    assert after != before
    assert after == _djangos(support_agent)
    licenses = next(m for app in after for m in app["models"] if m["object_name"] == "ProviderLicense")
    assert licenses["perms"]["change"] and licenses["add_url"]


def test_it_follows_a_permission_given_to_the_user_alone(support_agent):
    before = ops_site.get_app_list(_request(_fresh(support_agent)))
    support_agent.user_permissions.add(Permission.objects.get(codename="change_providerlicense"))

    after = ops_site.get_app_list(_request(_fresh(support_agent)))

    assert after != before and after == _djangos(support_agent)


def test_it_follows_a_user_made_inactive(lead):
    assert ops_site.get_app_list(_request(_fresh(lead)))
    lead.is_active = False
    lead.save()

    assert ops_site.get_app_list(_request(_fresh(lead))) == _djangos(lead) == []


def _names(app_list):
    return [(str(app["name"]), [str(model["name"]) for model in app["models"]]) for app in app_list]


def test_it_names_and_sorts_the_apps_in_the_requests_language(lead):
    english = _names(ops_site.get_app_list(_request(_fresh(lead))))
    with translation.override("fr"):
        french = _names(ops_site.get_app_list(_request(_fresh(lead))))
        assert french == _names(_djangos(lead))

    assert english == _names(_djangos(lead))
    assert dict(french)["Authentification et autorisation"] and "Authentification et autorisation" not in dict(english)


def test_it_hands_each_caller_a_list_of_its_own(lead):
    first = ops_site.get_app_list(_request(_fresh(lead)))
    first[0]["models"][0]["perms"]["add"] = "changed"
    first[0]["models"].clear()
    first.clear()

    assert ops_site.get_app_list(_request(_fresh(lead))) == _djangos(lead)


def test_it_forgets_the_lists_when_a_model_is_registered_or_unregistered(superuser):
    before = ops_site.get_app_list(_request(superuser))
    ops_site.register(Permission)
    try:
        during = ops_site.get_app_list(_request(superuser))
        assert during == _djangos(superuser)
        assert any(m["object_name"] == "Permission" for app in during for m in app["models"])
    finally:
        ops_site.unregister(Permission)

    assert ops_site.get_app_list(_request(superuser)) == before


def test_it_shows_the_same_sidebar_on_a_page(client, support_agent):
    client.force_login(support_agent)
    first = client.get(reverse("ops:clinical_patient_changelist"))
    again = client.get(reverse("ops:clinical_patient_changelist"))

    assert first.context["available_apps"] == again.context["available_apps"] == _djangos(support_agent)

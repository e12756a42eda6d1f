"""Shared fixtures: named personas, one per role, and a clean Redis database per test."""

import os
import time

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from core.redis import get_redis
from ops_console import roles

PASSWORD = "correct-horse-battery-staple-42"

# Tests use their own Redis database so they never touch the running console's data
# (OPS_TEST_REDIS_DB lets concurrent test runs on one machine keep apart).
settings.REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('OPS_TEST_REDIS_DB', '15')}"
get_redis.cache_clear()
# Plain HTTP for servers started once per session (live_server), as for the test client below.
settings.SECURE_SSL_REDIRECT = False
# Two-factor sign-in (on in production) is off unless a test turns it on with the settings fixture.
settings.OPS_REQUIRE_2FA = False


@pytest.fixture(autouse=True)
def _test_serving(settings):
    """Serve the test client over plain HTTP and find static files without collectstatic."""
    settings.SECURE_SSL_REDIRECT = False
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def fast_passwords(settings):
    """Hash passwords cheaply: for tests that create a few users each and never test hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def redis_client():
    """Return the Redis client, emptied before and after the test."""
    client = get_redis()
    client.flushdb()
    yield client
    client.flushdb()


def _staff(username: str, role: str | None):
    user = get_user_model().objects.create_user(username, f"{username}@ops.example", PASSWORD, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def support_agent(db):
    return _staff("support", roles.SUPPORT_AGENT)


@pytest.fixture
def clinical_ops(db):
    return _staff("clinops", roles.CLINICAL_OPS)


@pytest.fixture
def engineer(db):
    return _staff("engineer", roles.ENGINEER)


@pytest.fixture
def lead(db):
    return _staff("lead", roles.OPS_LEAD)


@pytest.fixture
def outsider(db):
    """A staff account with no console role."""
    return _staff("outsider", None)


@pytest.fixture
def personas(support_agent, clinical_ops, engineer, lead, outsider):
    """Return every persona by role name (None for the outsider)."""
    return {
        roles.SUPPORT_AGENT: support_agent,
        roles.CLINICAL_OPS: clinical_ops,
        roles.ENGINEER: engineer,
        roles.OPS_LEAD: lead,
        None: outsider,
    }


@pytest.fixture(scope="module")
def push_server(django_db_setup, django_db_blocker):
    """The ASGI server and the push relay as processes of their own, for every test of a module."""
    from tests.clinical.push_server import PushServer

    stack = PushServer()
    stack.start_web()
    stack.start_relay()
    yield stack
    stack.stop()


@pytest.fixture
def push(push_server, transactional_db, redis_client):
    """The push server on a clean Redis (the relay finds its stream anew), with committed rows."""
    time.sleep(0.3)  # the relay notices the flushed stream and reads the new one from its start
    return push_server

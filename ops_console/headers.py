"""The Content-Security-Policy header: the console loads scripts, styles and images from itself only.

Django's SecurityMiddleware sets the other production headers (HSTS, nosniff, referrer policy)
and XFrameOptionsMiddleware denies framing; Django 5.2 has no CSP of its own, hence this.
"""

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """Add ``OPS_CONTENT_SECURITY_POLICY`` to every response that does not set its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.OPS_CONTENT_SECURITY_POLICY:
            response.headers.setdefault("Content-Security-Policy", settings.OPS_CONTENT_SECURITY_POLICY)
        return response

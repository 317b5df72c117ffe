"""allauth's account-management pages answer 404 here.

With SOCIALACCOUNT_ONLY allauth drops its e-mail and password pages, but keeps its third-party
account pages under /accounts/3rdparty/: the connected accounts (with a form to remove one), the
sign-up form for a new SSO user, and stock "cancelled" and "error" pages. SSO users are made and
kept by the login alone (`adapter`), and its failures have the site's own page, so none of these
has a use, and the sign-up form would let someone choose their own username.
"""

from django.http import Http404
from django.utils.deprecation import MiddlewareMixin

HIDDEN_URL_NAMES = frozenset(
    {
        "socialaccount_connections",
        "socialaccount_signup",
        "socialaccount_login_cancelled",
        "socialaccount_login_error",
    }
)


class HideAccountManagementMiddleware(MiddlewareMixin):
    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.resolver_match.url_name in HIDDEN_URL_NAMES:
            raise Http404("No such page.")

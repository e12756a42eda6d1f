"""Who sees django-debug-toolbar: the Engineer role (its capability), nobody else."""


def show_toolbar(request) -> bool:
    """Return True for signed-in users whose role includes the debug toolbar."""
    user = getattr(request, "user", None)
    return bool(user and user.is_authenticated and user.is_active and user.has_perm("ops_console.use_debug_toolbar"))

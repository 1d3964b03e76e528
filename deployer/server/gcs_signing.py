"""Placeholder replaced below in this change set."""


def install_from_env() -> None:
    return None

import pytest
from cryptography.fernet import Fernet


@pytest.fixture
def fernet_keys(settings):
    """A fresh encryption key list for one test."""
    settings.SECRET_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    return settings.SECRET_ENCRYPTION_KEYS

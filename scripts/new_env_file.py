"""Print a development .env with fresh keys (used once by `make run`)."""

import secrets

from cryptography.fernet import Fernet

print(f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}")
print(f"PIPELINEHUB_SECRET_KEYS={Fernet.generate_key().decode()}")

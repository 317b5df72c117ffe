"""AWS Secrets Manager: a secret's versions carry the staging labels AWSCURRENT and AWSPREVIOUS,
which Secrets Manager itself moves when a value is put, so the hub and anything else reading
the secret agree on what is current.

Region and credentials come from the usual AWS chain (AWS_REGION, an instance or pod role,
~/.aws); AWS_SECRETS_ENDPOINT_URL points the client elsewhere (a VPC endpoint, moto in the
tests). The secret is `location`, else PIPELINEHUB_SECRET_NAME_PREFIX followed by the ref's
name; storing into a secret that does not exist creates it.
"""

import functools
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from . import SecretBackend, SecretUnavailable, Stages, VersionedValue, register_secret_backend

CURRENT, PREVIOUS = "AWSCURRENT", "AWSPREVIOUS"
NOT_FOUND = "ResourceNotFoundException"
VERSION_ID_LENGTHS = range(32, 65)  # what the API takes; botocore refuses others itself
# A connection waits on this read (through the provider): fail in seconds, not minutes.
CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}
)


@register_secret_backend("aws")
class AWSSecretsManagerBackend(SecretBackend):
    label = "AWS Secrets Manager"

    def describe(self, ref):
        return f"the AWS Secrets Manager secret {secret_id(ref)!r}"

    def stages(self, ref):
        labels = _call(ref, "describe_secret", SecretId=secret_id(ref))
        holders = _holders(labels.get("VersionIdsToStages", {})) if labels else {}
        return Stages(holders.get(CURRENT), holders.get(PREVIOUS))

    def current(self, ref):
        answer = _call(ref, "get_secret_value", SecretId=secret_id(ref), VersionStage=CURRENT)
        if answer is None:
            raise SecretUnavailable(f"Secret {ref.name!r} has no value yet.")
        return VersionedValue(answer["VersionId"], _string(ref, answer))

    def read(self, ref, version_id):
        answer = None
        if VERSION_ID_LENGTHS.start <= len(version_id) < VERSION_ID_LENGTHS.stop:
            answer = _call(ref, "get_secret_value", SecretId=secret_id(ref), VersionId=version_id)
        if answer is None:
            raise _no_version(ref, version_id)
        return _string(ref, answer)

    def put(self, ref, value):
        # The token makes a retried call the same version rather than a second one.
        token = str(uuid.uuid4())
        arguments = {"SecretString": value, "ClientRequestToken": token}
        answer = _call(ref, "put_secret_value", SecretId=secret_id(ref), **arguments)
        if answer is None:
            answer = _call(ref, "create_secret", Name=secret_id(ref), **arguments)
        return answer["VersionId"]

    def mark(self, ref, current, previous):
        for version_id in filter(None, (current, previous)):
            self.read(ref, version_id)  # a clear error for an unknown version, before any move
        now = self.stages(ref)
        holder = now.previous
        if current != now.current:
            # Secrets Manager moves AWSPREVIOUS to the version AWSCURRENT leaves.
            _move(ref, CURRENT, current, now.current)
            holder = now.current
        if previous != holder:
            _move(ref, PREVIOUS, previous, holder)
        return current


def secret_id(ref):
    return ref.location or settings.SECRET_NAME_PREFIX + ref.name


def _client():
    return _client_for(settings.AWS_SECRETS_ENDPOINT_URL or None)


@functools.cache
def _client_for(endpoint_url):
    """One client per endpoint for the process: boto3 clients are thread-safe and renew
    expiring role credentials themselves."""
    return boto3.session.Session().client(
        "secretsmanager", endpoint_url=endpoint_url, config=CLIENT_CONFIG
    )


def _call(ref, operation, **arguments):
    """One call; None when the secret or the version asked for does not exist. Other errors
    become SecretUnavailable naming the secret (botocore's messages carry no values)."""
    try:
        return getattr(_client(), operation)(**arguments)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == NOT_FOUND:
            return None
        raise SecretUnavailable(
            f"Secret {ref.name!r}: AWS Secrets Manager refused {exc.operation_name} on "
            f"{secret_id(ref)!r} ({code})."
        ) from None
    except BotoCoreError as exc:
        raise SecretUnavailable(
            f"Secret {ref.name!r}: AWS Secrets Manager cannot be used: {exc}"
        ) from None


def _move(ref, stage, to_version, from_version):
    moves = {"MoveToVersionId": to_version, "RemoveFromVersionId": from_version}
    arguments = {key: version for key, version in moves.items() if version}
    moved = _call(
        ref,
        "update_secret_version_stage",
        SecretId=secret_id(ref),
        VersionStage=stage,
        **arguments,
    )
    if moved is None:
        raise _no_version(ref, to_version)


def _no_version(ref, version_id):
    return SecretUnavailable(f"Secret {ref.name!r} has no version {version_id!r}.")


def _holders(versions_to_stages):
    return {stage: version for version, stages in versions_to_stages.items() for stage in stages}


def _string(ref, answer):
    if "SecretString" not in answer:
        raise SecretUnavailable(
            f"Secret {ref.name!r}: {secret_id(ref)!r} holds binary data, not a string."
        )
    return answer["SecretString"]

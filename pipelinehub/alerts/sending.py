"""Sending one message to one target: a signed webhook POST or an e-mail.

Failures raise `DeliveryFailed` with a message fit for the admin and the logs: the status code
or the kind of network error, never the URL (a Slack webhook URL is itself a credential) nor
the signing secret.

Signature: `X-PipelineHub-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`
with the Unix time in `X-PipelineHub-Timestamp`; receivers verify it as docs/alerts.md shows.
"""

import hashlib
import hmac
import json
import smtplib
import time

import requests
from django.conf import settings
from django.core.mail import EmailMessage

from pipelinehub.credentials.backends import SecretUnavailable

from . import bodies
from .models import NotificationTarget

TIMESTAMP_HEADER = "X-PipelineHub-Timestamp"
SIGNATURE_HEADER = "X-PipelineHub-Signature"
DELIVERY_HEADER = "X-PipelineHub-Delivery"
# Seconds to connect, then to wait for the answer: a receiver that hangs holds a worker slot
# only this long.
TIMEOUT = (5, 10)


class DeliveryFailed(Exception):
    """A message was not taken; the text names what went wrong without URL or secret."""


def signature(secret, timestamp, body):
    """`sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>` (body: the bytes sent)."""
    message = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def deliver(delivery):
    """Send `delivery` (its events, grouped) to its target."""
    events = bodies.load(delivery.events.all())
    target = delivery.target
    if target.channel == NotificationTarget.Channel.EMAIL:
        subject, text = bodies.email_text(events)
        send_email(target, subject, text)
    elif target.body_format == NotificationTarget.BodyFormat.SLACK:
        post(target, bodies.slack_body(events), delivery.pk)
    else:
        post(target, bodies.generic_body(delivery.pk, events), delivery.pk)


def send_test(target):
    """A test message, sent now: what the team-admin page's "Send a test" does."""
    text = f"Test notification from PipelineHub for team {target.team.slug} ({target.name})."
    if target.channel == NotificationTarget.Channel.EMAIL:
        send_email(target, f"[PipelineHub] {text}", text + "\n")
    elif target.body_format == NotificationTarget.BodyFormat.SLACK:
        post(target, {"text": text}, "test")
    else:
        body = {"delivery_id": None, "team": target.team.slug, "summary": text, "count": 0}
        post(target, {**body, "events": [], "omitted": 0, "test": True}, "test")


def post(target, payload, delivery_id):
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "PipelineHub-Alerts",
        DELIVERY_HEADER: str(delivery_id),
    }
    if target.signing_secret_id:
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = signature(_secret(target), timestamp, body)
    try:
        # No redirects: a receiver may not send the signed body (and its events) elsewhere.
        response = requests.post(
            target.url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False
        )
    except requests.Timeout:
        raise DeliveryFailed("the receiver did not answer in time") from None
    except requests.ConnectionError:
        raise DeliveryFailed("the receiver could not be reached") from None
    except requests.RequestException as exc:
        raise DeliveryFailed(f"request failed ({type(exc).__name__})") from None
    response.close()
    if 300 <= response.status_code < 400:
        raise DeliveryFailed(f"HTTP {response.status_code}: redirects are not followed")
    if not 200 <= response.status_code < 300:
        raise DeliveryFailed(f"HTTP {response.status_code}")


def _secret(target):
    try:
        return target.signing_secret.reveal()
    except SecretUnavailable:
        raise DeliveryFailed("the signing secret could not be read") from None


def send_email(target, subject, text):
    message = EmailMessage(
        subject, text, from_email=settings.DEFAULT_FROM_EMAIL, to=target.recipients
    )
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"the mail server refused or failed ({type(exc).__name__})") from None

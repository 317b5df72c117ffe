"""Alerts: runs that need a person (runaway, stuck, late, failed), and the notifications about
them that go out to each team's webhooks and e-mail addresses (docs/alerts.md)."""

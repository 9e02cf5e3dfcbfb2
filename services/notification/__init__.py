"""The notification service: follower projection, go-live fan-out, inbox, preferences, Web Push, webhooks."""

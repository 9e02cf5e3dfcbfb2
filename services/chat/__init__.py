"""The chat service: rooms, messages, moderation, room modes, blocked terms."""

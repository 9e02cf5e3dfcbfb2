"""The chat service's settings (CPC_* variables, read once at start) and the part the sending rules use."""

from __future__ import annotations

from libs.runtime import ServiceConfig
from services.chat.domain import Settings

__all__ = ["PRUNE_SECONDS", "ChatConfig"]

# How often message rows older than the room stream keeps are forgotten.
PRUNE_SECONDS = 3600.0


class ChatConfig(ServiceConfig, frozen=True, kw_only=True):
    """CPC_* settings of the chat service."""

    # Messages per user per room per window; broadcaster and moderators get the privileged rate.
    chat_rate_messages: int = 20
    chat_privileged_rate_messages: int = 100
    chat_rate_window_seconds: int = 30
    # Usernames (comma-separated) shown with the platform admin badge.
    platform_admins: str = ""

    def settings(self) -> Settings:
        """The numbers and names the sending rules use."""
        return Settings(
            rate=self.chat_rate_messages,
            privileged_rate=self.chat_privileged_rate_messages,
            window=self.chat_rate_window_seconds,
            admins=frozenset(a.strip().lower() for a in self.platform_admins.split(",") if a.strip()),
        )

"""The channel service: channels, stream keys, moderators and VIPs, avatar and banner images."""

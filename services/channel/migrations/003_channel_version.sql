-- The channel's version as others copy it (proto.channel.ChannelCopy): 1 at creation, one more with
-- every change of the channel (channel.update), carried by ChannelCreated/ChannelUpdated.
ALTER TABLE channels ADD COLUMN version bigint NOT NULL DEFAULT 1;

"""edge: WHEP viewer sessions fed with the encoded frames ingest publishes; never decodes or encodes."""

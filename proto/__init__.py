"""Subjects, streams and message Structs, one module per owning service."""

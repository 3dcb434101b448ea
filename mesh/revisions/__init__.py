"""Configuration revisions in NATS: what the mesh ran, each apply and rollback (see `_store`)."""

from mesh.revisions._store import CURRENT_KEY, Revision, RevisionStore, digest_of

__all__ = ["CURRENT_KEY", "Revision", "RevisionStore", "digest_of"]

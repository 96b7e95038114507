"""Crusoe Container Registry pull-secret rotator: mint a token, write it to a remote cluster, revoke old ones."""

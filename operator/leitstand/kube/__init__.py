"""The Kubernetes edge: raw API bodies, the API client, the watch-fed store, the applier.

May import ``leitstand.core``; never the controller or the API server layer.
"""

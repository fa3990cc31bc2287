"""The Gradio web UI, mounted by the service at /ui."""

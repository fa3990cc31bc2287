"""The BentoML service: visearch's REST API, with the Gradio UI mounted at /ui."""

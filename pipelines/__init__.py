"""The visearch Kubeflow pipeline: build, compile, and run locally with kfp.local."""

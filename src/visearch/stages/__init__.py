"""The lifecycle stages of a category, one module each: preprocess → train → evaluate → embed → upsert.

Each stage module owns its folder-level body (inputs and outputs are directories), its pipeline
entry (``*_step``: what its kfp component calls), its reuse/resume/scratch rules and the names of
its folders. The CLI, the components, ``in_process`` (all five in this process) and the tests call
the same functions. The mechanics (torch, metrics, index writes) live in the modules they call.
"""

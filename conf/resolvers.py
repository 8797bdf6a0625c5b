"""Custom OmegaConf resolvers for this project's configs: the one place to define them.

sweepbook runs this file once per process before it composes a config: in a notebook, in
`sweepbook run`, when a sweep validates its jobs, and inside every job. Register each
resolver with `replace=True`, so running the file again is harmless:

    from omegaconf import OmegaConf
    OmegaConf.register_new_resolver("double", lambda x: 2 * x, replace=True)

Then `'+width=${double:64}'` works on the command line and in any YAML file.
"""

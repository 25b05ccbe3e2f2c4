"""airgap: carry a Kubernetes application's images, Helm chart and CRDs into a disconnected cluster.

The library is usable on its own; the `airgap` command is a thin layer over it:

- :mod:`airgap.model`     descriptors, manifests, indexes, digests, references
- :mod:`airgap.places`    where content lives: registry, OCI layout directory, bundle tarball
- :mod:`airgap.copy`      the one copy engine between any two places
- :mod:`airgap.bundler`   connected side: IMAGES.md -> offline bundle
- :mod:`airgap.loader`    isolated side: bundle -> private registry + Helm values
"""

__version__ = "0.2.0"

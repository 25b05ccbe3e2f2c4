"""airgap: carry a Kubernetes application's images, Helm chart and CRDs into a disconnected cluster.

The library is usable on its own; the `airgap` command is a thin layer over it:

- :mod:`airgap.model`     descriptors, manifests, indexes, digests, references
- :mod:`airgap.places`    where content lives: registry, OCI layout directory, bundle tarball
- :mod:`airgap.copy`      the one copy engine between any two places
- :mod:`airgap.bundler`   connected side: IMAGES.md -> offline bundle
- :mod:`airgap.loader`    isolated side: bundle -> private registry + Helm values
"""

__version__ = "0.2.0"

import sys as _sys

# httpx's __init__ imports its own command-line client (httpx._main: rich, pygments, click) whenever
# those are installed, as they are here: a tenth of a second on every start of ours, for a CLI we
# never run. A None entry makes that optional import fail as if they were missing; httpx then keeps
# a stub `httpx.main`. Nothing else of httpx changes. setdefault: never undo a real import.
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

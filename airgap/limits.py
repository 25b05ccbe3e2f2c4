"""Every limit airgap applies, in one place: sizes, counts, depths, chunk sizes, timeouts, retries.

Two kinds live here. Caps on what we read from places we do not control (a registry, a bundle, a
user's file) bound memory and CPU whatever that input claims: each is set well above what real
content needs, so only hostile or broken input meets it, and the error names the limit. Tunables
(timeouts, retries, concurrency) are defaults that flags or options may override.

Modules import these by name (``from airgap.limits import MANIFEST_BYTES``), sometimes under the
module's older name, so a limit is changed here and nowhere else. Nothing here imports airgap.
"""

from __future__ import annotations

KiB = 1 << 10
MiB = 1 << 20

# --- I/O ------------------------------------------------------------------------------------------

#: Read/hash/stream unit: large enough that hashing releases the GIL, small enough to bound memory.
CHUNK = 1 * MiB
#: Room left on a file system beyond the output files we write: a disk filled to the last byte breaks the node.
OUTPUT_SPACE_MARGIN = 1 * MiB
#: Slack in the bundle's free-space preflight: tar headers, manifests, signatures, the partial file's tail.
BUNDLE_SPACE_MARGIN = 64 * MiB

# --- OCI content from registries and layouts ------------------------------------------------------

#: An image manifest or index: Distribution, Harbor and ECR refuse larger ones.
MANIFEST_BYTES = 4 * MiB
#: JSON nesting of a manifest: descriptors nest three deep; annotations and unknown fields get room.
MANIFEST_DEPTH = 32
#: A small blob read whole into memory (an image config, a signature payload) unless the caller says more.
SMALL_BLOB_BYTES = 1 * MiB
#: A cosign simple-signing payload: a few hundred bytes of JSON; anything near this is not one.
SIGNATURE_PAYLOAD_BYTES = 1 * MiB
#: A trusted_root.json or an upstream public key that travels in the bundle (the public-good root is ~10 KiB)
TRUST_FILE_BYTES = 1 * MiB
#: Distribution's limit on a repository name.
REPOSITORY_NAME = 255

# --- generic untrusted JSON (airgap.safejson defaults) --------------------------------------------

JSON_DEPTH = 32
#: Structural tokens ([ { , :) counted before parsing: an upper bound on the objects json.loads builds.
JSON_TOKENS = 1_000_000
#: int() of a long digit string is quadratic (limited only from Python 3.11): no field needs more digits.
JSON_INT_DIGITS = 20

# --- bundles (a bundle is hostile until its signature checks) -------------------------------------

#: The bundle manifest (first member): 100k referenced digests take 8 MiB; a real bundle needs far less.
BUNDLE_MANIFEST_BYTES = 16 * MiB
#: The format nests 4 deep (images[].upstream{}); room for unknown keys.
BUNDLE_MANIFEST_DEPTH = 16
#: JSON values in the bundle manifest or the layout's index.json.
BUNDLE_MANIFEST_VALUES = 1_000_000
BUNDLE_IMAGES = 10_000
BUNDLE_FILES = 10_000
#: Part file names carry two digits today; room to grow.
BUNDLE_PARTS = 999
#: One signature per signed manifest: the index and each platform's.
BUNDLE_SIGNATURES = 256
BUNDLE_PLATFORMS = 64
#: Any free-text field of the bundle manifest (source, created, tool...).
BUNDLE_TEXT = 1024
#: No blob or bundle is larger than 1 PiB: bounds the arithmetic on sizes a manifest claims.
BUNDLE_SIZE = 1 << 50
#: The chart is read into memory to push it as an OCI artifact.
CHART_BYTES = 64 * MiB
#: The bundle's detached signature: base64 of a DER ECDSA P-256 signature is under 100 bytes.
BUNDLE_SIGNATURE_BYTES = 4 * KiB
#: The small JSON header that opens every part of a split bundle but the first.
PART_HEADER_BYTES = 4 * KiB
#: Payload of one pax or GNU long-name tar header (a path and a size, in practice); tarfile reads it whole.
TAR_HEADER_BYTES = 64 * KiB
#: The OCI layout's index.json inside a bundle: one descriptor per tagged image.
LAYOUT_INDEX_BYTES = 4 * MiB
#: Any other member read into memory whole when the caller names no limit.
MEMBER_BYTES = 8 * MiB
#: Tar members beyond those the manifest accounts for: room for tools/ members a newer bundler adds.
EXTRA_MEMBERS = 10_000
#: libzstd's own default window limit: bounds the decompressor's memory.
ZSTD_MAX_WINDOW = 1 << 27

#: Manifests and signature blobs of a split bundle are held in memory until its first part is written.
BUNDLE_SMALL_MEMBER_BYTES = 4 << 20
#: A planned (plain) bundle starts writeback every this many bytes, so the final fsync is short.
BUNDLE_WRITEBACK_BYTES = 64 << 20
#: Blobs streamed into a plain bundle at once: keeps a registry and the disk busy; each holds some
#: MiB in flight, and more streams pushed peak memory over 100 MB.
BUNDLE_STREAMS = 4

# --- attachments (signatures, SBOMs, referrers) ---------------------------------------------------

#: A signature of an attestation of an SBOM of an image; deeper is a loop or abuse.
MAX_ATTACHMENT_DEPTH = 4
#: Per image: cosign, oras and scanners write a handful each.
MAX_ATTACHMENTS = 256
#: A referrers listing is paginated with Link headers; more pages than this is a broken server.
MAX_REFERRER_PAGES = 16

# --- release records on the target ----------------------------------------------------------------

#: Load records kept in the target's airgap-releases repository that are read back.
RELEASE_RECORDS = 1000
#: One record's blob (a bundle manifest and its signature).
RELEASE_RECORD_BYTES = 64 * MiB

# --- YAML and text input --------------------------------------------------------------------------

#: IMAGES.md, prose included; its YAML block is capped lower (YAML_BYTES).
IMAGES_MD_BYTES = 8 * MiB
#: A YAML document we did not write (IMAGES.md's block, Chart.yaml): a few KiB in practice.
YAML_BYTES = 1 * MiB
YAML_DEPTH = 32
YAML_NODES = 100_000
#: A chart's files, uncompressed: templates and values, a few MiB at most.
CHART_UNPACKED_BYTES = 256 * MiB
CHART_MEMBERS = 10_000
#: Nesting of a Helm values key (a.b.c) an image may name: bounds the document we write.
VALUES_KEY_DEPTH = 8
#: A --ca-file: a PEM bundle of a few certificates.
CA_FILE_BYTES = 1 * MiB

# --- keys -----------------------------------------------------------------------------------------

#: scrypt memory for cosign's key encryption (N=65536, r=8 needs 64 MiB); bounds a hostile key file.
SCRYPT_MAXMEM = 256 * MiB

# --- network --------------------------------------------------------------------------------------

#: Per read/write on a registry connection; large layers stream for far longer in total.
HTTP_TIMEOUT = 300.0
#: A probe of /v2/ or a kind-detection request: an answer is quick or the host is not a registry.
PROBE_TIMEOUT = 10.0
#: The target probe before a load (TLS, auth, referrers): allows for a slow first TLS handshake.
TARGET_PROBE_TIMEOUT = 15.0
#: A docker credential helper (`docker-credential-X get`): one that hangs must not hang the command.
CREDENTIAL_HELPER_TIMEOUT = 30.0
#: Downloading an IMAGES.md `files:` URL.
FILE_DOWNLOAD_TIMEOUT = 60.0
#: Attempts per registry request (408, 429, 5xx, dropped connections).
HTTP_RETRIES = 5
#: First retry delay, doubled each attempt up to RETRY_BACKOFF_CAP.
RETRY_BACKOFF = 0.5
RETRY_BACKOFF_CAP = 20.0
#: Longer waits (Docker Hub's 6 h pull-limit window) are reported, not slept.
MAX_RETRY_WAIT = 60.0
MAX_REDIRECTS = 10
#: Pooled connections per registry.
CONNECTIONS = 16
#: Blobs copied at once; each holds one CHUNK in flight.
COPY_CONCURRENCY = 8
#: Blobs up to this size are uploaded in one request (POST, then PUT ?digest= with the body) instead of
#: POST, PATCH, PUT: the round trip saved matters for small blobs (configs, signatures, small images).
#: A verifying load hashes them before that PUT (it commits), reading them twice, which costs little.
MONOLITHIC_UPLOAD_BYTES = 4 * MiB
#: Whole-blob retries of the copy engine after a Transient failure (on top of the client's own).
COPY_RETRIES = 3
#: Blob hashing threads of `airgap verify`: hashing is CPU-bound, two per core is plenty.
VERIFY_CONCURRENCY = 4

# --- ECR tokens -----------------------------------------------------------------------------------

#: Renew a token this many seconds before its expiresAt.
ECR_RENEW_BEFORE = 300.0
#: When expiresAt is missing or already past (clock skew, emulators).
ECR_FALLBACK_TTL = 3600.0
#: Never hammer GetAuthorizationToken (20 TPS account limit).
ECR_MIN_RENEW_INTERVAL = 1.0

# --- builds ---------------------------------------------------------------------------------------

#: One image build; a cold build of the application's heavy images takes well under this.
BUILD_TIMEOUT = 6 * 3600
#: Reaching dockerd: a daemon that does not answer in this time is not usable.
BUILDER_PROBE_TIMEOUT = 5
#: Lines of a failed build's log quoted in the error.
BUILD_LOG_TAIL_LINES = 15

{{/* ---------------------------------------------------------------- offline runtime
Nothing leaves the cluster at run time: the embedding model comes from the private registry (the
IMAGES.md artifact models/all-minilm-l6-v2, pushed there by `airgap load`), the model hubs are set
offline, Haystack's telemetry is off, and the generator may talk to an in-cluster OpenAI-compatible
server (vLLM, Ollama, TGI) instead of api.openai.com.  Values: offline, model, llm (docs/offline.md).

Each helper takes (dict "root" $ "image" <the component's image block>) and is included by one line
from the query and indexing Deployments. */}}

{{/* The model reference, pinned by digest when airgap load wrote one. */}}
{{- define "haystack-rag.modelImage" -}}
{{- include "haystack-rag.image" (dict "root" .root "image" .root.Values.model.image "firstParty" true) -}}
{{- end -}}

{{/* "true" when the generator talks to an in-cluster endpoint: the OpenAI API key is optional then
(haystack-rag.llmConfigured accepts a key or this). */}}
{{- define "haystack-rag.llmInCluster" -}}
{{- if .Values.llm.endpoint }}true{{ end -}}
{{- end -}}

{{/* env entries (a YAML list, indented by the caller). */}}
{{- define "haystack-rag.offlineEnv" -}}
{{- $v := .root.Values -}}
{{- if $v.offline.enabled }}
- name: HF_HUB_OFFLINE
  value: "1"
- name: TRANSFORMERS_OFFLINE
  value: "1"
- name: HF_HUB_DISABLE_TELEMETRY
  value: "1"
- name: HAYSTACK_TELEMETRY_ENABLED
  value: "False"
{{- end }}
{{- if $v.model.enabled }}
- name: USE_OPENAI_EMBEDDER
  value: "false"
- name: HAYSTACK_EMBEDDER_MODEL
  value: {{ printf "%s/%s" (trimSuffix "/" $v.model.mountPath) $v.model.path | quote }}
- name: HAYSTACK_EMBEDDING_DIM
  value: {{ $v.model.embeddingDim | toString | quote }}
{{- end }}
{{- with $v.llm.endpoint }}
{{- if not (regexMatch "^https?://[^/\\s]+(/\\S*)?$" .) }}
{{- fail (printf "llm.endpoint %q: give the OpenAI-compatible base URL, like http://vllm.llm.svc:8000/v1" .) }}
{{- end }}
- name: OPENAI_BASE_URL
  value: {{ . | quote }}
{{- end }}
{{- with $v.llm.model }}
- name: HAYSTACK_LLM_MODEL
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* initContainers entry that fetches the model by digest (model.delivery: initContainer). */}}
{{- define "haystack-rag.modelInitContainer" -}}
{{- $root := .root -}}
{{- $m := $root.Values.model -}}
{{- if and $m.enabled (eq $m.delivery "initContainer") }}
- name: fetch-model
  image: {{ include "haystack-rag.image" (dict "root" $root "image" .image "firstParty" true) }}
  imagePullPolicy: {{ include "haystack-rag.pullPolicy" (dict "root" $root "image" .image) }}
  command: [python, -m, fetch_artifact]
  args:
    - {{ include "haystack-rag.modelImage" . | quote }}
    - {{ $m.mountPath | quote }}
    {{- if include "haystack-rag.modelPullSecret" $root }}
    - --auth-file
    - /var/run/airgap/registry/.dockerconfigjson
    {{- end }}
    {{- range $m.fetchArgs }}
    - {{ . | quote }}
    {{- end }}
  volumeMounts:
    - name: model
      mountPath: {{ $m.mountPath }}
    {{- if include "haystack-rag.modelPullSecret" $root }}
    - name: model-pull-secret
      mountPath: /var/run/airgap/registry
      readOnly: true
    {{- end }}
  resources:
    {{- toYaml $m.fetchResources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65534
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL]}
    seccompProfile: {type: RuntimeDefault}
{{- end }}
{{- end -}}

{{/* The Secret (dockerconfigjson) the fetcher authenticates with: model.pullSecret, else the first
global.imagePullSecrets entry, else none (anonymous pull). */}}
{{- define "haystack-rag.modelPullSecret" -}}
{{- $m := .Values.model -}}
{{- if $m.pullSecret -}}
{{- $m.pullSecret -}}
{{- else if .Values.global.imagePullSecrets -}}
{{- $first := first .Values.global.imagePullSecrets -}}
{{- if kindIs "string" $first }}{{ $first }}{{ else }}{{ $first.name }}{{ end -}}
{{- end -}}
{{- end -}}

{{/* volumeMounts entry of the API container. */}}
{{- define "haystack-rag.modelVolumeMount" -}}
{{- if .root.Values.model.enabled }}
- name: model
  mountPath: {{ .root.Values.model.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* volumes entries: an image volume (Kubernetes >= 1.33 with the ImageVolume feature, containerd >= 2.1
or CRI-O >= 1.31) or an emptyDir the init container fills. */}}
{{- define "haystack-rag.modelVolume" -}}
{{- $m := .root.Values.model -}}
{{- if $m.enabled }}
{{- if eq $m.delivery "imageVolume" }}
- name: model
  image: {reference: {{ include "haystack-rag.image" (dict "root" .root "image" $m.image "firstParty" true) | quote }}, pullPolicy: {{ include "haystack-rag.pullPolicy" (dict "root" .root "image" $m.image) }}}
{{- else if eq $m.delivery "initContainer" }}
- name: model
  emptyDir:
    sizeLimit: {{ $m.sizeLimit }}
{{- with include "haystack-rag.modelPullSecret" .root }}
- name: model-pull-secret
  secret:
    secretName: {{ . }}
    items:
      - key: .dockerconfigjson
        path: .dockerconfigjson
{{- end }}
{{- else }}
{{- fail (printf "model.delivery %q: use initContainer (any cluster) or imageVolume (Kubernetes >= 1.33 with the ImageVolume feature)" $m.delivery) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- names */}}

{{- define "haystack-rag.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "haystack-rag.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>", for objects of one component. Call with (dict "root" $ "component" "query"). */}}
{{- define "haystack-rag.componentName" -}}
{{- printf "%s-%s" (include "haystack-rag.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "haystack-rag.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "haystack-rag.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "haystack-rag.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- labels
Every object and every pod carries app.kubernetes.io/part-of: haystack-rag, so log shippers and
dashboards can select the whole application by one label. */}}

{{/* Selector labels. Call with (dict "root" $ "component" "query"). */}}
{{- define "haystack-rag.selectorLabels" -}}
app.kubernetes.io/name: {{ include "haystack-rag.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Full label set. Call with (dict "root" $ "component" "query"). */}}
{{- define "haystack-rag.labels" -}}
helm.sh/chart: {{ include "haystack-rag.chart" .root }}
{{ include "haystack-rag.selectorLabels" . }}
app.kubernetes.io/part-of: haystack-rag
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- images
The ONE place an image reference is built; every container of every template calls it.

Call with (dict "root" $ "image" .Values.query.image "firstParty" true).

  registry:   global.imageRegistry  >  image's own registry  >  image.registry  >  image's defaultRegistry
              (host[:port][/path]: a Harbor project or public.ecr.aws/<alias> is a registry with a path)
  tag:        image's own tag  >  (first-party only) image.tag  >  (first-party only) .Chart.AppVersion
  digest:     when set, the reference is <registry>/<repository>@<digest> and the tag is dropped.

So the deployment guide's two keys (image.registry, image.tag) alone move EVERY image, third-party
included, to the private registry; third-party images keep their own tags.
An empty registry yields "<repository>:<tag>" (an image built locally). */}}
{{- define "haystack-rag.image" -}}
{{- $root := .root -}}
{{- $img := .image -}}
{{- $registry := $img.registry | default $root.Values.image.registry | default $img.defaultRegistry | default "" -}}
{{- $tag := $img.tag -}}
{{- if .firstParty -}}
{{- $tag = $img.tag | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- end -}}
{{- with $root.Values.global.imageRegistry -}}
{{- $registry = . -}}
{{- end -}}
{{- if not $img.repository -}}
{{- fail "every image needs a repository (check the image blocks in your values)" -}}
{{- end -}}
{{- $name := $img.repository -}}
{{- if $registry -}}
{{- $name = printf "%s/%s" (trimSuffix "/" $registry) $img.repository -}}
{{- end -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $name $img.digest -}}
{{- else if $tag -}}
{{- printf "%s:%s" $name (toString $tag) -}}
{{- else -}}
{{- fail (printf "image %s has neither a tag nor a digest" $name) -}}
{{- end -}}
{{- end -}}

{{/* imagePullPolicy for an image block: its own pullPolicy, else image.pullPolicy. */}}
{{- define "haystack-rag.pullPolicy" -}}
{{- .image.pullPolicy | default .root.Values.image.pullPolicy | default "IfNotPresent" -}}
{{- end -}}

{{/* Pod-level imagePullSecrets from global.imagePullSecrets (names or {name: ...}). */}}
{{- define "haystack-rag.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets -}}
imagePullSecrets:
{{- range . }}
{{- if kindIs "string" . }}
  - name: {{ . }}
{{- else }}
  - name: {{ .name }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- secrets
Three secret keys feed the application: opensearch-user, opensearch-password, openai-api-key. */}}

{{- define "haystack-rag.secretName" -}}
{{- if and (ne .Values.secrets.provider "externalSecrets") .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-secrets" (include "haystack-rag.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "haystack-rag.usesVault" -}}
{{- if eq .Values.secrets.provider "vault" -}}true{{- end -}}
{{- end -}}

{{/* Path of the file the Vault agent renders for one secret key. */}}
{{- define "haystack-rag.vaultFile" -}}
{{- printf "%s/%s" (trimSuffix "/" .root.Values.secrets.vault.secretVolumePath) .key -}}
{{- end -}}

{{/* Env entries giving a container some secret keys.  Call with
(dict "root" $ "env" (dict "OPENSEARCH_PASSWORD" "opensearch-password" ...)).
Secret-backed providers: valueFrom.secretKeyRef.  Vault: <VAR>_FILE pointing at the file the
agent renders; the observability layer in the first-party images reads those files at start. */}}
{{- define "haystack-rag.secretEnv" -}}
{{- $root := .root -}}
{{- range $var, $key := .env }}
{{- if eq $root.Values.secrets.provider "vault" }}
- name: {{ $var }}_FILE
  value: {{ include "haystack-rag.vaultFile" (dict "root" $root "key" $key) | quote }}
{{- else }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ include "haystack-rag.secretName" $root }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Vault Agent Injector annotations for a pod that needs the given secret keys.
Call with (dict "root" $ "keys" (list "opensearch-user" ...)). Renders nothing unless provider is vault. */}}
{{- define "haystack-rag.vaultAnnotations" -}}
{{- $root := .root -}}
{{- $v := $root.Values.secrets.vault -}}
{{- if eq $root.Values.secrets.provider "vault" }}
vault.hashicorp.com/agent-inject: "true"
vault.hashicorp.com/role: {{ $v.role | quote }}
vault.hashicorp.com/secret-volume-path: {{ $v.secretVolumePath | quote }}
{{- range $key := .keys }}
{{- $ref := index $v.data $key }}
vault.hashicorp.com/agent-inject-secret-{{ $key }}: {{ $ref.path | quote }}
{{- $field := ternary (printf ".Data.data.%s" $ref.field) (printf ".Data.%s" $ref.field) (eq (int $v.kvVersion) 2) }}
{{- if regexMatch "^[A-Za-z_][A-Za-z0-9_]*$" $ref.field }}{{ else }}
{{- $field = ternary (printf "index .Data.data %q" $ref.field) (printf "index .Data %q" $ref.field) (eq (int $v.kvVersion) 2) }}
{{- end }}
vault.hashicorp.com/agent-inject-template-{{ $key }}: {{ printf "{{- with secret %q -}}{{ %s }}{{- end -}}" $ref.path $field | quote }}
{{- end }}
{{- with $v.annotations }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- misc */}}

{{- define "haystack-rag.opensearchHost" -}}
{{- include "haystack-rag.componentName" (dict "root" . "component" "opensearch") -}}
{{- end -}}

{{- define "haystack-rag.opensearchUrl" -}}
{{- printf "https://%s:9200" (include "haystack-rag.opensearchHost" .) -}}
{{- end -}}

{{/* Init container waiting until OpenSearch accepts TCP connections (no credentials needed). */}}
{{- define "haystack-rag.waitForOpensearch" -}}
- name: wait-for-opensearch
  image: {{ include "haystack-rag.image" (dict "root" . "image" .Values.init.image) }}
  imagePullPolicy: {{ include "haystack-rag.pullPolicy" (dict "root" . "image" .Values.init.image) }}
  command:
    - sh
    - -c
    - until nc -z -w 2 {{ include "haystack-rag.opensearchHost" . }} 9200; do echo waiting for opensearch; sleep 2; done
  resources:
    {{- toYaml .Values.init.resources | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65534
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities: {drop: [ALL]}
{{- end -}}

{{/* ---------------------------------------------------------------- render-time checks
Values that render fine but cannot work fail here, with what to set.  Called once, from
templates/validate.yaml. */}}

{{/* "true" when the query/indexing APIs will have what the OpenAI(-compatible) generator and embedder
need, as far as a render can tell: an API key from values, a key from a backend the chart cannot see
(existingSecret, External Secrets, Vault), or an in-cluster endpoint that needs none (llm.endpoint,
the `llm` values block).  Extend the `or` when another way of reaching a model is added. */}}
{{- define "haystack-rag.llmConfigured" -}}
{{- $s := .Values.secrets -}}
{{- $llm := .Values.llm | default dict -}}
{{- if or (not (has $s.provider (list "kubernetes" "sops"))) $s.existingSecret $s.openaiApiKey $llm.endpoint -}}true{{- end -}}
{{- end -}}

{{- define "haystack-rag.validate" -}}
{{- $s := .Values.secrets -}}
{{- range $key := list "opensearchUser" "opensearchPassword" "openaiApiKey" -}}
{{- if hasPrefix "ENC[" (toString (index $s $key)) -}}
{{- fail (printf "secrets.%s is still SOPS ciphertext (ENC[...]): deploy the encrypted file with `helm secrets upgrade ... -f secrets.enc.yaml` (the helm-secrets plugin decrypts it for helm), or decrypt it first with `sops -d`" $key) -}}
{{- end -}}
{{- end -}}
{{- if regexMatch "ENC\\[[A-Z0-9_]+,data:" (toYaml .Values) -}}
{{- fail "a value is still SOPS ciphertext (ENC[...]): pass SOPS-encrypted values files through the helm-secrets plugin (`helm secrets upgrade ...`) or decrypt them with `sops -d`" -}}
{{- end -}}
{{- $c := .Values.config -}}
{{- if and (or (eq $c.generator "openai") $c.useOpenAIEmbedder) (not (include "haystack-rag.llmConfigured" .)) -}}
{{- fail (printf "secrets.openaiApiKey is empty, but config.generator is %q%s: the query and indexing APIs would exit at start (\"OpenAI API key is required\"). Set secrets.openaiApiKey, or point the generator at an in-cluster OpenAI-compatible endpoint (llm.endpoint), or take the key from secrets.existingSecret or another secrets.provider" $c.generator (ternary " and config.useOpenAIEmbedder is true" "" (and $c.useOpenAIEmbedder true))) -}}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- frontend
nginx.conf for the upstream frontend image (nginx:alpine serving the React build).  Upstream
expects its server config to be mounted at run time; this one also lets nginx run as a non-root
user on a read-only root filesystem: an unprivileged port, pid and temp files under /tmp. */}}
{{- define "haystack-rag.frontendNginxConf" -}}
worker_processes auto;
# "stderr" writes to the inherited file descriptor; reopening /dev/stderr fails for a non-root
# nginx wherever the runtime's output pipe belongs to root (seen in tests/test_chart_security.py).
error_log stderr notice;
pid /tmp/nginx.pid;
events {
  worker_connections 1024;
}
http {
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  {{- if .Values.frontend.accessLog }}
  access_log /dev/stdout;
  {{- else }}
  # off by default, for the same reason as error_log above (Traefik logs every request anyway)
  access_log off;
  {{- end }}
  sendfile on;
  server_tokens off;
  client_body_temp_path /tmp/client_temp;
  proxy_temp_path /tmp/proxy_temp;
  fastcgi_temp_path /tmp/fastcgi_temp;
  uwsgi_temp_path /tmp/uwsgi_temp;
  scgi_temp_path /tmp/scgi_temp;
  server {
    listen {{ .Values.frontend.containerPort }};
    server_name _;
    root /usr/share/nginx/html;
    index index.html;
    # The IngressRoute sends /api to the APIs; what reaches the UI under /api (a path the
    # IngressRoute hides, such as /api/metrics) is not the single-page app's.
    location /api/ {
      return 404;
    }
    location = /api {
      return 404;
    }
    location / {
      try_files $uri $uri/ /index.html;
    }
  }
}
{{- end -}}

{{/* Changes when the secret values given to the chart change, so that a rotation through the values
(kubernetes/sops) restarts the pods that read them as environment variables. */}}
{{- define "haystack-rag.secretsChecksum" -}}
{{- pick .Values.secrets "provider" "existingSecret" "opensearchUser" "opensearchPassword" "openaiApiKey" | toJson | sha256sum -}}
{{- end -}}

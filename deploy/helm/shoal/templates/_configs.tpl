{{/* The services' TOML configs. Every key is parsed by the binaries' config structs
(serde deny_unknown_fields); crates/dev/tests/deploy.rs checks the rendered ones. */}}

{{- define "shoal.s3Secret" -}}
{{- if .Values.storage.s3.existingSecret -}}
{{ .Values.storage.s3.existingSecret }}
{{- else -}}
{{ include "shoal.fullname" . }}-s3
{{- end -}}
{{- end -}}

{{- define "shoal.originConfig" -}}
{{- $v := .Values.origin -}}
listen = "0.0.0.0:{{ $v.port }}"
data_dir = "/var/lib/shoal/origin"
shutdown_grace = "30s"

[store]
capacity_bytes = {{ int64 $v.cacheCapacityBytes }}

[cluster]
{{ include "shoal.ring" (dict "ctx" . "component" "origin" "replicas" $v.replicas "port" $v.port "ringReplicas" $v.ringReplicas) }}

[p2p.transport]
listen = "0.0.0.0:{{ $v.peerPort }}"
{{- if .Values.tls.enabled }}

[p2p.transport.tls]
ca_cert = "/etc/shoal/tls/ca.pem"
cert = "/etc/shoal/tls/peer.pem"
key = "/etc/shoal/tls/peer.key"
{{- end }}

{{ include "shoal.logToml" . }}
{{- if eq .Values.storage.kind "s3" }}

# Every namespace in one bucket; credentials from AWS_* (the Secret).
[[backends]]
namespace = ".*"
kind = "s3"
bucket = {{ required "storage.s3.bucket is required with storage.kind=s3" .Values.storage.s3.bucket | quote }}
region = {{ .Values.storage.s3.region | quote }}
{{- with .Values.storage.s3.endpoint }}
endpoint = {{ . | quote }}
allow_http = {{ hasPrefix "http://" . }}
{{- end }}
path_style = {{ .Values.storage.s3.pathStyle }}
{{- with .Values.storage.s3.prefix }}
prefix = {{ . | quote }}
{{- end }}
{{- else if ne .Values.storage.kind "filesystem" }}
{{- fail "storage.kind must be filesystem or s3" }}
{{- end }}
{{- with $v.extraConfig }}

{{ . }}
{{- end }}
{{- end -}}

{{- define "shoal.trackerConfig" -}}
{{- $v := .Values.tracker -}}
{{- $o := .Values.origin -}}
listen = "0.0.0.0:{{ $v.port }}"
announce_interval = {{ $v.announceInterval | quote }}
shutdown_grace = "10s"

# Metainfo lookups go to the origins' ring.
[origins]
{{ include "shoal.ring" (dict "ctx" . "component" "origin" "replicas" $o.replicas "port" $o.port "ringReplicas" $o.ringReplicas) }}

{{ include "shoal.logToml" . }}
{{- with $v.extraConfig }}

{{ . }}
{{- end }}
{{- end -}}

{{- define "shoal.buildIndexConfig" -}}
{{- $v := .Values.buildIndex -}}
{{- $o := .Values.origin -}}
listen = "0.0.0.0:{{ $v.port }}"
data_dir = "/var/lib/shoal/build-index"
shutdown_grace = "30s"

# This zone's origins: replication reads manifests and blobs from them.
[origins]
{{ include "shoal.ring" (dict "ctx" . "component" "origin" "replicas" $o.replicas "port" $o.port "ringReplicas" $o.ringReplicas) }}

{{ include "shoal.logToml" . }}
{{- range $v.replication }}

[[replication]]
repository = {{ required "buildIndex.replication[].repository" .repository | quote }}
build_index = {{ required "buildIndex.replication[].buildIndex" .buildIndex | quote }}
origins = [{{ range $i, $o := .origins }}{{ if $i }}, {{ end }}{{ $o | quote }}{{ end }}]
{{- end }}
{{- with $v.extraConfig }}

{{ . }}
{{- end }}
{{- end -}}

{{- define "shoal.proxyConfig" -}}
{{- $v := .Values.proxy -}}
{{- $o := .Values.origin -}}
{{- $base := include "shoal.fullname" . -}}
listen = "0.0.0.0:{{ $v.port }}"
build_index = "http://{{ $base }}-build-index.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:{{ .Values.buildIndex.port }}"
shutdown_grace = "30s"

[origins]
{{ include "shoal.ring" (dict "ctx" . "component" "origin" "replicas" $o.replicas "port" $o.port "ringReplicas" $o.ringReplicas) }}

{{ include "shoal.logToml" . }}
{{- with $v.extraConfig }}

{{ . }}
{{- end }}
{{- end -}}

{{- define "shoal.agentConfig" -}}
{{- $v := .Values.agent -}}
{{- $t := .Values.tracker -}}
{{- $base := include "shoal.fullname" . -}}
# Host networking: the node's container runtime pulls from localhost:{{ $v.port }}; probes and
# Prometheus reach the node's IP.
listen = "0.0.0.0:{{ $v.port }}"
data_dir = "/var/lib/shoal/agent"
build_index = "http://{{ $base }}-build-index.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:{{ .Values.buildIndex.port }}"
cache_capacity_bytes = {{ int64 $v.cacheCapacityBytes }}
seed_time = {{ $v.seedTime | quote }}
shutdown_grace = "10s"

[trackers]
{{ include "shoal.ring" (dict "ctx" . "component" "tracker" "replicas" $t.replicas "port" $t.port "ringReplicas" $t.ringReplicas) }}

[transport]
listen = "0.0.0.0:{{ $v.peerPort }}"
{{- if or $v.bandwidth.ingressBytesPerSec $v.bandwidth.egressBytesPerSec }}

[transport.bandwidth]
{{- with $v.bandwidth.ingressBytesPerSec }}
ingress_bytes_per_sec = {{ int64 . }}
{{- end }}
{{- with $v.bandwidth.egressBytesPerSec }}
egress_bytes_per_sec = {{ int64 . }}
{{- end }}
{{- end }}
{{- if .Values.tls.enabled }}

[transport.tls]
ca_cert = "/etc/shoal/tls/ca.pem"
cert = "/etc/shoal/tls/peer.pem"
key = "/etc/shoal/tls/peer.key"
{{- end }}

{{ include "shoal.logToml" . }}
{{- range $v.mirrors }}

[[mirrors]]
registry = {{ required "agent.mirrors[].registry" .registry | quote }}
{{- with .url }}
url = {{ . | quote }}
{{- end }}
{{- if .default }}
default = true
{{- end }}
{{- if .username }}
username = {{ .username | quote }}
password_file = "/etc/shoal/mirror-credentials/{{ .registry }}"
{{- end }}
{{- end }}
{{- with $v.extraConfig }}

{{ . }}
{{- end }}
{{- end -}}

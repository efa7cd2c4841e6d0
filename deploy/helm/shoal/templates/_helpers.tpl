{{/* The release's base name: "shoal" for a release named shoal. */}}
{{- define "shoal.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; pass (dict "ctx" $ "component" "origin"). */}}
{{- define "shoal.labels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- end -}}

{{- define "shoal.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "shoal.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Pod annotations: Prometheus scraping and a checksum of the config, so pods restart when
it changes. Pass (dict "ctx" $ "port" 7100 "config" $config). */}}
{{- define "shoal.podAnnotations" -}}
checksum/config: {{ .config | sha256sum }}
{{- if .ctx.Values.metrics.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/* host:port of every member of a ring (origin or tracker) by stable pod name, as a TOML
list. Pass (dict "ctx" $ "component" "origin" "replicas" 3 "port" 7100). */}}
{{- define "shoal.members" -}}
{{- $name := printf "%s-%s" (include "shoal.fullname" .ctx) .component -}}
{{- $members := list -}}
{{- range $i := until (int .replicas) -}}
{{- $members = append $members (printf "%q" (printf "%s-%d.%s.%s.svc.%s:%d" $name $i $name $.ctx.Release.Namespace $.ctx.Values.clusterDomain (int $.port))) -}}
{{- end -}}
[{{ join ", " $members }}]
{{- end -}}

{{/* A ring's TOML table body (members or dns, replicas). Pass (dict "ctx" $ "component"
"origin" "replicas" 3 "port" 7100 "ringReplicas" 3). */}}
{{- define "shoal.ring" -}}
{{- $name := printf "%s-%s" (include "shoal.fullname" .ctx) .component -}}
{{- if eq .ctx.Values.ringMembership "dns" -}}
dns = { name = "{{ $name }}.{{ .ctx.Release.Namespace }}.svc.{{ .ctx.Values.clusterDomain }}", port = {{ .port }}, refresh = "10s" }
{{- else if eq .ctx.Values.ringMembership "names" -}}
members = {{ include "shoal.members" . }}
{{- else -}}
{{- fail "ringMembership must be names or dns" -}}
{{- end }}
replicas = {{ min (int .ringReplicas) (int .replicas) }}
{{- end -}}

{{- define "shoal.logToml" -}}
[log]
format = {{ .Values.log.format | quote }}
filter = {{ .Values.log.filter | quote }}
{{- end -}}

{{/* Scheduling fields of a pod spec from a component's values. */}}
{{- define "shoal.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget. Pass (dict "ctx" $ "component" "origin" "pdb" .Values.origin.pdb). */}}
{{- define "shoal.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "shoal.fullname" .ctx }}-{{ .component }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "shoal.labels" . | nindent 4 }}
spec:
  maxUnavailable: {{ .pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "shoal.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* The probes of a service on port `port` (its /health and /readiness). */}}
{{- define "shoal.probes" -}}
readinessProbe:
  httpGet: {path: /readiness, port: {{ .port }}}
  periodSeconds: 5
  failureThreshold: 3
livenessProbe:
  httpGet: {path: /health, port: {{ .port }}}
  initialDelaySeconds: 10
  periodSeconds: 10
  failureThreshold: 6
{{- end -}}

{{/* A ServiceMonitor for a component, when enabled. */}}
{{- define "shoal.serviceMonitor" -}}
{{- if .ctx.Values.metrics.serviceMonitor.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "shoal.fullname" .ctx }}-{{ .component }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "shoal.labels" . | nindent 4 }}
    {{- with .ctx.Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "shoal.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ .ctx.Values.metrics.serviceMonitor.interval }}
{{- end }}
{{- end -}}

{{/* The common container security context. */}}
{{- define "shoal.securityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}

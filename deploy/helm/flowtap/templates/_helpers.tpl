{{/* The chart's name, or nameOverride. */}}
{{- define "flowtap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: the release name when it contains the chart's name, else release-chart. */}}
{{- define "flowtap.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the pods. */}}
{{- define "flowtap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowtap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "flowtap.labels" -}}
{{ include "flowtap.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flowtap.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flowtap.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The flowtap config file. */}}
{{- define "flowtap.config" -}}
{{- $cfg := dict }}
{{- with .Values.capture }}{{ $_ := set $cfg "capture" . }}{{ end }}
{{- with .Values.log }}{{ $_ := set $cfg "log" . }}{{ end }}
{{- if .Values.pipelines }}
{{- $_ := set $cfg "pipelines" .Values.pipelines }}
{{- else }}
{{- if not .Values.sinks }}{{ fail "sinks: the default pipeline needs at least one sink (or set pipelines)" }}{{ end }}
{{- $_ := set $cfg "pipelines" (list (dict "name" "default" "events" .Values.events "sinks" .Values.sinks)) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

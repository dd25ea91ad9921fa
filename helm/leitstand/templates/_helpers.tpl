{{/* The release's full name, at most 63 characters. */}}
{{- define "leitstand.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "leitstand.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "leitstand.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "leitstand.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "leitstand.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator's configuration file, with the Lease in the release namespace. */}}
{{- define "leitstand.config" -}}
{{- $election := dict "enabled" .Values.leaderElection.enabled "namespace" .Release.Namespace "leaseName" (include "leitstand.fullname" .) "leaseDurationSeconds" .Values.leaderElection.leaseDurationSeconds "renewIntervalSeconds" .Values.leaderElection.renewIntervalSeconds -}}
{{- toYaml (merge (dict "leaderElection" $election) .Values.config) -}}
{{- end -}}

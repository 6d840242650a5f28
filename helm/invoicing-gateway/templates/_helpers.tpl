{{/*
Expand the name of the chart.
*/}}
{{- define "invoicing-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A default fully qualified app name, at most 63 characters (DNS names). The release name alone when it
already contains the chart name.
*/}}
{{- define "invoicing-gateway.fullname" -}}
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

{{/*
Chart name and version as used by the chart label.
*/}}
{{- define "invoicing-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "invoicing-gateway.labels" -}}
helm.sh/chart: {{ include "invoicing-gateway.chart" . }}
{{ include "invoicing-gateway.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels (every component of the release).
*/}}
{{- define "invoicing-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "invoicing-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels and selector labels of one component: include with (dict "context" $ "component" "api").
*/}}
{{- define "invoicing-gateway.componentLabels" -}}
{{ include "invoicing-gateway.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- define "invoicing-gateway.componentSelectorLabels" -}}
{{ include "invoicing-gateway.selectorLabels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The service account's name.
*/}}
{{- define "invoicing-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "invoicing-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "invoicing-gateway.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
Names of the ConfigMap and the Secret the pods read, and of the copies the migration hook reads (a
pre-install hook runs before the release's own objects exist).
*/}}
{{- define "invoicing-gateway.configName" -}}
{{ include "invoicing-gateway.fullname" . }}-config
{{- end }}
{{- define "invoicing-gateway.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- include "invoicing-gateway.fullname" . }}-secret
{{- end }}
{{- end }}
{{- define "invoicing-gateway.migrationConfigName" -}}
{{ include "invoicing-gateway.fullname" . }}-migration-config
{{- end }}
{{- define "invoicing-gateway.migrationSecretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- include "invoicing-gateway.fullname" . }}-migration-secret
{{- end }}
{{- end }}

{{/*
The ConfigMap's data: every setting that is not a secret, by its environment variable name
(app/settings.py; README "Configuration"). tests/deploy checks each name against the Settings class.
*/}}
{{- define "invoicing-gateway.configData" -}}
APP_ENV: {{ .Values.appEnv | quote }}
LOG_LEVEL: {{ .Values.logLevel | quote }}
DATABASE_POOL_SIZE: {{ .Values.database.poolSize | quote }}
DATABASE_PGBOUNCER: {{ .Values.database.pgbouncer.enabled | quote }}
CYBERSOURCE_ENVIRONMENT: {{ .Values.cybersource.environment | quote }}
CYBERSOURCE_AUTH: {{ .Values.cybersource.auth | quote }}
CYBERSOURCE_MLE: {{ .Values.cybersource.mle.mode | quote }}
{{- with .Values.cybersource.mle.certificate }}
CYBERSOURCE_MLE_CERTIFICATE: {{ . | toJson }}
{{- end }}
{{- with .Values.cybersource.mle.responseKeyId }}
CYBERSOURCE_MLE_RESPONSE_KEY_ID: {{ . | quote }}
{{- end }}
{{- with .Values.cybersource.baseUrl }}
CYBERSOURCE_BASE_URL: {{ . | quote }}
{{- end }}
{{- with .Values.cybersource.merchantId }}
CYBERSOURCE_MERCHANT_ID: {{ . | quote }}
{{- end }}
{{- with .Values.cybersource.keyId }}
CYBERSOURCE_KEY_ID: {{ . | quote }}
{{- end }}
{{- with .Values.cybersource.webhook.keyId }}
CYBERSOURCE_WEBHOOK_KEY_ID: {{ . | quote }}
{{- end }}
{{- with .Values.cybersource.webhook.keyExpiresAt }}
CYBERSOURCE_WEBHOOK_KEY_EXPIRES_AT: {{ . | quote }}
{{- end }}
{{- with .Values.subscriptions.allowedHosts }}
SUBSCRIPTION_ALLOWED_HOSTS: {{ toJson . | quote }}
{{- end }}
SUBSCRIPTION_DELIVERY_CONCURRENCY: {{ .Values.subscriptions.deliveryConcurrency | quote }}
SUBSCRIPTION_TIMEOUT_SECONDS: {{ .Values.subscriptions.timeoutSeconds | quote }}
SUBSCRIPTION_RETRY_WINDOW_SECONDS: {{ .Values.subscriptions.retryWindowSeconds | quote }}
{{- with .Values.oidcProviders }}
OIDC_PROVIDERS: {{ toJson . | quote }}
{{- end }}
{{- /* The standalone relay serves its probes and metrics on the pod's address. */}}
RELAY_METRICS_HOST: "0.0.0.0"
RELAY_METRICS_PORT: {{ .Values.relay.metricsPort | quote }}
{{- range $name, $value := .Values.extraConfig }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
The chart-managed Secret's data (stringData), empty values left out so the service's own default or
refusal applies.
*/}}
{{- define "invoicing-gateway.secretData" -}}
{{- with .Values.database.url }}
DATABASE_URL: {{ . | quote }}
{{- end }}
{{- if .Values.database.pgbouncer.enabled }}
DATABASE_LISTEN_URL: {{ required "database.pgbouncer.directUrl is required with database.pgbouncer.enabled (LISTEN and migrations need a direct connection)" .Values.database.pgbouncer.directUrl | quote }}
{{- end }}
{{- with .Values.cybersource.sharedSecret }}
CYBERSOURCE_SHARED_SECRET: {{ . | quote }}
{{- end }}
{{- with .Values.cybersource.profiles }}
CYBERSOURCE_PROFILES: {{ toJson . | quote }}
{{- end }}
{{- with .Values.cybersource.proxyUrl }}
CYBERSOURCE_PROXY_URL: {{ . | quote }}
{{- end }}
{{- with .Values.cybersource.mle.responsePrivateKey }}
CYBERSOURCE_MLE_RESPONSE_PRIVATE_KEY: {{ . | toJson }}
{{- end }}
{{- with .Values.cybersource.webhook.secret }}
CYBERSOURCE_WEBHOOK_SECRET: {{ . | quote }}
{{- end }}
{{- with .Values.cybersource.webhook.previousKeys }}
CYBERSOURCE_WEBHOOK_PREVIOUS_KEYS: {{ toJson . | quote }}
{{- end }}
{{- with .Values.apiKeys }}
API_KEYS: {{ toJson . | quote }}
{{- end }}
{{- end }}

{{/*
What the api, relay and migration containers share: the image, the settings, the security context, a
writable /tmp and the optional projected token. Include with (dict "context" $ "config" NAME "secret" NAME).
*/}}
{{- define "invoicing-gateway.containerBase" -}}
image: {{ include "invoicing-gateway.image" .context | quote }}
imagePullPolicy: {{ .context.Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ .config }}
  - secretRef:
      name: {{ .secret }}
{{- with .context.Values.cybersource.webhook.existingSecret }}
  - secretRef:
      name: {{ . }}
{{- end }}
{{- with .context.Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "invoicing-gateway.volumeMounts" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- if .Values.serviceAccount.projectedToken.enabled }}
  - name: service-account-token
    mountPath: {{ .Values.serviceAccount.projectedToken.mountPath }}
    readOnly: true
{{- end }}
{{- end }}

{{- define "invoicing-gateway.volumes" -}}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- with .Values.serviceAccount.projectedToken }}
{{- if .enabled }}
  - name: service-account-token
    projected:
      sources:
        - serviceAccountToken:
            path: token
            audience: {{ required "serviceAccount.projectedToken.audience is required when the token is enabled" .audience | quote }}
            expirationSeconds: {{ .expirationSeconds }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Pod-level fields the api and the relay share. Include with (dict "context" $ "component" NAME "values" .Values.api).
*/}}
{{- define "invoicing-gateway.podSpecCommon" -}}
{{- $ctx := .context -}}
{{- with $ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "invoicing-gateway.serviceAccountName" $ctx }}
automountServiceAccountToken: {{ $ctx.Values.serviceAccount.automount }}
{{- with $ctx.Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
terminationGracePeriodSeconds: {{ .values.terminationGracePeriodSeconds }}
{{- if $ctx.Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: {{ $ctx.Values.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $ctx.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "invoicing-gateway.componentSelectorLabels" (dict "context" $ctx "component" $.component) | nindent 8 }}
  {{- end }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Pod template annotations: a checksum of the settings, so a changed ConfigMap or chart-managed Secret
rolls the pods.
*/}}
{{- define "invoicing-gateway.checksums" -}}
checksum/config: {{ include "invoicing-gateway.configData" . | sha256sum }}
{{- if not .Values.existingSecret }}
checksum/secret: {{ include "invoicing-gateway.secretData" . | sha256sum }}
{{- end }}
{{- end }}

{{/*
The Prometheus label selector of this release's series (prometheus-operator sets job to the Service's
name).
*/}}
{{- define "invoicing-gateway.promSelector" -}}
namespace="{{ .Release.Namespace }}", job=~"{{ include "invoicing-gateway.fullname" . }}(-relay)?"
{{- end }}

{{/* Names and labels shared by every object of the release. */}}
{{- define "berth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "berth.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "berth.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "berth.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "berth.claimName" -}}
{{- default (printf "%s-data" (include "berth.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}

{{/* The Redis URL both `serve` and `worker` use, or "" without Redis. */}}
{{- define "berth.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s-redis:6379" (include "berth.fullname" .) -}}
{{- else -}}
{{- .Values.redis.url -}}
{{- end -}}
{{- end -}}

{{/* "true" when the cache is an S3 bucket (config.storage.driver: s3), "" otherwise. */}}
{{- define "berth.s3" -}}
{{- if eq (default "filesystem" (dig "storage" "driver" "" .Values.config)) "s3" -}}true{{- end -}}
{{- end -}}

{{/* Checks that fail the render with a sentence instead of producing a broken release. */}}
{{- define "berth.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "berth.s3" .)) -}}
{{- fail "replicaCount > 1 needs a cache shared by every replica; the filesystem cache is one ReadWriteOnce volume, so keep replicaCount: 1 or use the S3 driver (values-replicated.yaml)" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "berth.redisUrl" .)) -}}
{{- fail "replicaCount > 1 needs Redis for cross-replica coordination: set redis.enabled: true or redis.url" -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.cluster.secretName) -}}
{{- fail "replicaCount > 1 needs cluster.secretName: a Secret whose key `secret` authenticates fill joins between replicas" -}}
{{- end -}}
{{- if and (include "berth.s3" .) (not (dig "storage" "s3" "bucket" "" .Values.config)) -}}
{{- fail "config.storage.driver: s3 needs config.storage.s3.bucket (and endpoint for a store other than AWS S3)" -}}
{{- end -}}
{{- if and .Values.worker.enabled (not (include "berth.redisUrl" .)) -}}
{{- fail "worker.enabled needs Redis: set redis.enabled: true or redis.url" -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.redis.url -}}
{{- fail "set either redis.enabled (a Redis in this release) or redis.url (an existing Redis), not both" -}}
{{- end -}}
{{- end -}}

{{/* The pod spec parts `serve` and `worker` share. */}}
{{- define "berth.podCommon" -}}
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: data
    {{- if include "berth.s3" . }}
    # The bucket is the cache; this is only the local staging folder.
    emptyDir:
      sizeLimit: {{ .Values.staging.sizeLimit }}
    {{- else }}
    persistentVolumeClaim:
      claimName: {{ include "berth.claimName" . }}
    {{- end }}
  - name: tmp
    emptyDir: {}
  - name: config
    configMap:
      name: {{ include "berth.fullname" . }}-config
{{- end -}}

{{- define "berth.containerSecurity" -}}
readOnlyRootFilesystem: true
runAsNonRoot: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "berth.envCommon" -}}
- name: BERTH_CONFIG
  value: /etc/berth/berth.yaml
{{- with (include "berth.redisUrl" .) }}
- name: BERTH_REDIS_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.s3Credentials.secretName }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
{{- end -}}

{{/* `serve` only: how the other replicas reach this pod for fill joins. */}}
{{- define "berth.envCluster" -}}
{{- if .Values.cluster.secretName }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: BERTH_CLUSTER_REPLICA_ID
  value: $(POD_NAME)
- name: BERTH_CLUSTER_ADVERTISE_URL
  value: {{ printf "http://$(POD_IP):%d" (int .Values.service.port) | quote }}
- name: BERTH_CLUSTER_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.cluster.secretName }}
      key: secret
{{- end }}
{{- end -}}

{{- define "berth.mounts" -}}
- name: data
  mountPath: /var/lib/berth
- name: tmp
  mountPath: /tmp
- name: config
  mountPath: /etc/berth
  readOnly: true
{{- end -}}

{{/* The CSI driver name: a contract with every existing PersistentVolume, never a value. */}}
{{- define "vsphere-csi.driverName" -}}
csi.vsphere.vmware.com
{{- end }}

{{- define "vsphere-csi.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name prefix; "vsphere-csi" for a release named vsphere-csi. */}}
{{- define "vsphere-csi.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "vsphere-csi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "vsphere-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vsphere-csi
{{- end }}

{{/* Selector labels; call with (dict "root" $ "component" "controller"). */}}
{{- define "vsphere-csi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vsphere-csi.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}, refusing what is not pinned.
Call with (dict "image" .Values.x.image "default" "<default tag>" "what" "<values path>").
*/}}
{{- define "vsphere-csi.image" -}}
{{- $tag := .image.tag | default (get . "default") -}}
{{- if not $tag }}{{ fail (printf "%s.tag must be set: images are pinned by tag" .what) }}{{ end -}}
{{- if eq (toString $tag) "latest" }}{{ fail (printf "%s.tag must not be \"latest\": pin a released tag" .what) }}{{ end -}}
{{- if .image.digest -}}
{{ printf "%s:%s@%s" .image.repository (toString $tag) .image.digest }}
{{- else -}}
{{ printf "%s:%s" .image.repository (toString $tag) }}
{{- end -}}
{{- end }}

{{- define "vsphere-csi.driverImage" -}}
{{ include "vsphere-csi.image" (dict "image" .Values.image "default" (printf "v%s" .Chart.AppVersion) "what" "image") }}
{{- end }}

{{/* Where the CSI socket lives inside every container of a pod. */}}
{{- define "vsphere-csi.socketDir" -}}/csi{{- end }}
{{- define "vsphere-csi.socketPath" -}}/csi/csi.sock{{- end }}

{{/* The node plugin's socket directory on the host, under kubelet's plugins dir. */}}
{{- define "vsphere-csi.nodePluginDir" -}}
{{ printf "%s/plugins/%s" (trimSuffix "/" .Values.node.kubeletDir) (include "vsphere-csi.driverName" .) }}
{{- end }}

{{/*
Arguments common to the driver in every mode; call with (dict "root" $ "component" "node").
New driver flags (e.g. a health address) go here or in the mode's own list.
*/}}
{{- define "vsphere-csi.driverCommonArgs" -}}
{{- $v := .root.Values -}}
- --endpoint=unix://{{ include "vsphere-csi.socketPath" .root }}
- --log-format={{ $v.logFormat }}
- -v={{ $v.logLevel }}
{{- if $v.metrics.enabled }}
- --metrics-address={{ include "vsphere-csi.listenAddress" (dict "mode" $v.metrics.bindAddress "port" (index $v.metrics (printf "%sPort" .component))) }}
{{- end }}
{{- if not $v.sidecars.livenessProbe.enabled }}
- --healthz-address={{ include "vsphere-csi.listenAddress" (dict "mode" (include "vsphere-csi.healthBind" .) "port" (index $v .component).healthPort) }}
{{- end }}
{{- end }}

{{/*
Where a component's /healthz listens: localhost, podIP or all, from <component>.healthBindAddress
(auto: localhost on the host's network, where kubelet probes 127.0.0.1, else the pod's IP, which
kubelet probes by default). Call with (dict "root" $ "component" "node").
*/}}
{{- define "vsphere-csi.healthBind" -}}
{{- $c := index .root.Values .component -}}
{{- $mode := $c.healthBindAddress | default "auto" -}}
{{- if eq $mode "auto" -}}
{{ if $c.hostNetwork }}localhost{{ else }}podIP{{ end }}
{{- else if and (eq $mode "localhost") (not $c.hostNetwork) -}}
{{ fail (printf "%s.healthBindAddress localhost needs %s.hostNetwork: kubelet probes from the host's network and can't reach the loopback of a pod's own network (auto picks the pod's IP there)" .component .component) }}
{{- else -}}
{{ $mode }}
{{- end -}}
{{- end }}

{{/*
host:port for a listen mode (localhost, podIP or all). podIP is the container's POD_IP variable
(vsphere-csi.podIPEnv), bracketed so that an IPv6 address works too.
Call with (dict "mode" "podIP" "port" 9808).
*/}}
{{- define "vsphere-csi.listenAddress" -}}
{{- if eq .mode "localhost" -}}
127.0.0.1:{{ .port }}
{{- else if eq .mode "podIP" -}}
[$(POD_IP)]:{{ .port }}
{{- else -}}
:{{ .port }}
{{- end -}}
{{- end }}

{{/* The pod's IP as POD_IP, for listen addresses in podIP mode. */}}
{{- define "vsphere-csi.podIPEnv" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end }}

{{/* Whether the driver container of a component listens on its pod's IP (needs POD_IP). */}}
{{- define "vsphere-csi.driverNeedsPodIP" -}}
{{- $v := .root.Values -}}
{{- if or (and $v.metrics.enabled (eq $v.metrics.bindAddress "podIP")) (and (not $v.sidecars.livenessProbe.enabled) (eq (include "vsphere-csi.healthBind" .) "podIP")) -}}
true
{{- end -}}
{{- end }}

{{/*
The driver container's liveness probe: /healthz on the healthz port, at 127.0.0.1 when it
listens there (kubelet probes the pod's IP otherwise). Call with (dict "root" $ "component" "node").
*/}}
{{- define "vsphere-csi.livenessProbe" -}}
httpGet:
  {{- if eq (include "vsphere-csi.healthBind" .) "localhost" }}
  host: 127.0.0.1
  {{- end }}
  path: /healthz
  port: healthz
initialDelaySeconds: 10
timeoutSeconds: 5
periodSeconds: 10
failureThreshold: 5
{{- end }}

{{/* Leader-election arguments of a controller sidecar. */}}
{{- define "vsphere-csi.leaderElectionArgs" -}}
- --leader-election
- --leader-election-namespace={{ .Release.Namespace }}
- --leader-election-lease-duration={{ .Values.controller.leaderElection.leaseDuration }}
- --leader-election-renew-deadline={{ .Values.controller.leaderElection.renewDeadline }}
- --leader-election-retry-period={{ .Values.controller.leaderElection.retryPeriod }}
{{- if .Values.controller.leaderElection.releaseOnExit }}
- --feature-gates=ReleaseLeaderElectionOnExit=true
{{- end }}
{{- end }}

{{/* Hardened container security context for containers that need no privileges. */}}
{{- define "vsphere-csi.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* An INI value, quoted the way gopkg.in/ini reads it back unchanged. */}}
{{- define "vsphere-csi.iniValue" -}}
{{- $v := toString . -}}
{{- if contains "\"" $v -}}
{{ printf "`%s`" $v }}
{{- else -}}
{{ printf "\"%s\"" $v }}
{{- end -}}
{{- end }}

{{/* csi-vsphere.conf from values. */}}
{{- define "vsphere-csi.configFile" -}}
{{- if .Values.config.raw -}}
{{ .Values.config.raw }}
{{- else -}}
{{- if not .Values.config.clusterID }}{{ fail "config.create is true: set config.clusterID (or config.raw)" }}{{ end -}}
{{- if not .Values.config.virtualCenters }}{{ fail "config.create is true: list at least one vCenter in config.virtualCenters (or set config.raw)" }}{{ end -}}
[Global]
cluster-id = {{ include "vsphere-csi.iniValue" .Values.config.clusterID }}
{{- range .Values.config.virtualCenters }}

[VirtualCenter {{ include "vsphere-csi.iniValue" .host }}]
user = {{ include "vsphere-csi.iniValue" .user }}
password = {{ include "vsphere-csi.iniValue" .password }}
port = {{ include "vsphere-csi.iniValue" (.port | default 443) }}
datacenters = {{ include "vsphere-csi.iniValue" (join ", " .datacenters) }}
insecure-flag = {{ include "vsphere-csi.iniValue" (.insecureFlag | default false) }}
{{- with .thumbprint }}
thumbprint = {{ include "vsphere-csi.iniValue" . }}
{{- end }}
{{- with .caFile }}
ca-file = {{ include "vsphere-csi.iniValue" . }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Checks of combinations the schema cannot express clearly. */}}
{{- define "vsphere-csi.validate" -}}
{{- if and .Values.storageCapacity.enabled (not .Values.topology.enabled) }}
{{- fail "storageCapacity.enabled needs topology.enabled: capacity is published per topology segment, and without one the scheduler would find no capacity at all" }}
{{- end }}
{{- if and .Values.controller.hostNetwork .Values.node.hostNetwork }}
{{- if eq (int .Values.controller.healthPort) (int .Values.node.healthPort) }}
{{- fail "controller.hostNetwork and node.hostNetwork: give controller.healthPort and node.healthPort different ports (they share a host's network)" }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.controllerPort) (int .Values.metrics.nodePort)) }}
{{- fail "controller.hostNetwork and node.hostNetwork: give metrics.controllerPort and metrics.nodePort different ports (they share a host's network)" }}
{{- end }}
{{- end }}
{{- $defaults := 0 }}
{{- range .Values.storageClasses }}{{ if .default }}{{ $defaults = add1 $defaults }}{{ end }}{{ end }}
{{- if gt $defaults 1 }}
{{- fail "storageClasses: at most one class may be the default" }}
{{- end }}
{{- end }}

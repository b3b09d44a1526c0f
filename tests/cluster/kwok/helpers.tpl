{{- /* Shared template helpers, pasted by up.sh in place of every "#@HELPERS@" line.
  hex:         digest hex of an image reference: the sha256 digest in the reference
               when it has one, else sha256 of the whole image string (deterministic).
  repo:        repository of an image reference, normalised like containerd does
               (nginx -> docker.io/library/nginx, a/b -> docker.io/a/b).
  imageID:     <repo>@sha256:<hex>, as a containerd kubelet reports it.
  containerID: containerd://<sha256 of "<pod uid>/<container name>">.
*/ -}}
{{- define "hex" -}}{{ $d := regexFind "sha256:[0-9a-f]{64}$" . }}{{ if $d }}{{ trimPrefix "sha256:" $d }}{{ else }}{{ sha256sum . }}{{ end }}{{- end -}}
{{- define "repo" -}}{{ $r := regexReplaceAll "@sha256:[0-9a-f]{64}$" . "" }}{{ $r = regexReplaceAll ":[^/]*$" $r "" }}{{ if not (contains "/" $r) }}docker.io/library/{{ $r }}{{ else if regexMatch "^([^/]*[.:][^/]*|localhost)/" $r }}{{ $r }}{{ else }}docker.io/{{ $r }}{{ end }}{{- end -}}
{{- define "imageID" -}}{{ template "repo" . }}@sha256:{{ template "hex" . }}{{- end -}}
{{- define "containerID" -}}containerd://{{ sha256sum . }}{{- end -}}

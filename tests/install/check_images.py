"""Image pinning check of rendered manifests; see check-images.sh."""
import os, re, sys, yaml

release = os.environ["RELEASE"] == "1"
pinned = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
placeholder = "@sha256:" + "0" * 64
docs = []
for path in sys.argv[1:] or ["-"]:
    text = sys.stdin.read() if path == "-" else open(path).read()
    docs += [d for d in yaml.safe_load_all(text) if d]

def pod_specs(obj):
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "Pod":
        yield spec
    elif kind == "CronJob":
        yield spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    elif "template" in spec:
        yield spec["template"].get("spec", {})

images = []
for obj in docs:
    where = f'{obj.get("kind")}/{obj.get("metadata", {}).get("name")}'
    for ps in pod_specs(obj):
        for key in ("initContainers", "containers", "ephemeralContainers"):
            for c in ps.get(key) or []:
                images.append((f'{where} {key[:-1]} {c.get("name")}', c.get("image", "")))
    if obj.get("kind") == "ConfigMap":
        for key in ("TRIVY_IMAGE", "TRIVY_JAVA_DB_IMAGE"):
            if key in (obj.get("data") or {}):
                images.append((f"{where} data.{key}", obj["data"][key]))

bad = 0
for where, image in images:
    problems = []
    if not pinned.match(image):
        problems.append("not pinned by digest (want name[:tag]@sha256:<64 hex>)")
    if re.search(r"trivy[^@]*[:v]0\.69\.4(\b|@|$)", image):
        problems.append("Trivy 0.69.4 is a compromised release (CVE-2026-33634)")
    if release and image.endswith(placeholder):
        problems.append("placeholder digest: release automation has not pinned this image")
    if problems:
        bad += 1
        print(f"FAIL image {where}: {image!r}: {'; '.join(problems)}")
    else:
        print(f"PASS image {where}: {image}")
if not images:
    print("FAIL no images found in the input")
    bad += 1
sys.exit(1 if bad else 0)

"""The operator image entry of kustomize/components/operator/kustomization.yaml; see operator-image.sh.

That `images:` entry is the one place the operator image is named: deployment.yaml's container
says `image: image-scanner` (a symbolic name, never pulled), and the entry maps it to `newName`
(the published image) at `digest` (the RELEASE-PIN; all zeros until release automation pins it).
"""
import os, re, sys, yaml

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
NAME = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(\.[a-z0-9-]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")


def die(msg):
    print(f"operator-image: {msg}", file=sys.stderr)
    sys.exit(1)


def entry(path):
    """The single images: entry (name, newName, digest) of the kustomization at path."""
    try:
        doc = yaml.safe_load(open(path))
    except (OSError, yaml.YAMLError) as e:
        die(f"cannot read {path}: {e}")
    images = (doc or {}).get("images") or []
    if len(images) != 1:
        die(f"{path}: want exactly one images: entry (the operator's), found {len(images)}")
    img = images[0]
    if set(img) != {"name", "newName", "digest"}:
        die(f"{path}: the images: entry must have exactly name, newName, digest; has {sorted(img)}")
    if not NAME.match(str(img["newName"])):
        die(f"{path}: newName {img['newName']!r} is not a registry/repository image name")
    if not DIGEST.match(str(img["digest"])):
        die(f"{path}: digest {img['digest']!r} is not sha256:<64 hex>")
    return img


def pin(path, digest):
    """Replace the entry's digest line, text-wise (comments and layout stay), and re-check."""
    if not DIGEST.match(digest):
        die(f"pin: {digest!r} is not sha256:<64 hex>")
    before = entry(path)
    lines = open(path).read().splitlines(keepends=True)
    hits = [i for i, l in enumerate(lines)
            if re.fullmatch(r"\s*digest:\s*" + re.escape(before["digest"]) + r"\s*", l)]
    if len(hits) != 1:
        die(f"pin: {path}: want one line 'digest: {before['digest']}', found {len(hits)}")
    i = hits[0]
    lines[i] = lines[i].replace(before["digest"], digest)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(lines)
    after = entry(tmp)
    if after != dict(before, digest=digest):
        os.unlink(tmp)
        die(f"pin: {path}: unexpected result {after}")
    os.replace(tmp, path)
    return after


def main():
    args = sys.argv[1:]
    path = os.environ["KUSTOMIZATION"]
    if args == ["name"]:
        print(entry(path)["newName"])
    elif args == ["ref"]:
        img = entry(path)
        print(f"{img['newName']}@{img['digest']}")
    elif len(args) == 2 and args[0] == "pin":
        img = pin(path, args[1])
        print(f"{img['newName']}@{img['digest']}")
    else:
        die("usage: operator-image.sh name | ref | pin sha256:<64 hex>")


main()

// SPDX-License-Identifier: Apache-2.0

package release

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user: a fixed non-root ID (the one distroless images call
// "nonroot"), with an entry in /etc/passwd so tools can name it.
const (
	ImageUID = 65532
	ImageGID = 65532
)

// Where the image keeps its files.
const (
	imageBinDir = "usr/local/bin"
	// ImageConfigDir is where a pipelines config is mounted
	// (flowtap run --config /etc/flowtap/pipelines.yaml).
	ImageConfigDir = "etc/flowtap"
)

// Capabilities flowtap needs to load and attach its programs, as Linux
// numbers them (include/uapi/linux/capability.h).
const (
	capNetAdmin = 12
	capPerfmon  = 38
	capBPF      = 39
)

// FileCaps is the security.capability extended attribute the image sets on
// /usr/local/bin/flowtap: CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON permitted
// and effective (what 'setcap cap_bpf,cap_net_admin,cap_perfmon=ep' writes),
// in the kernel's struct vfs_cap_data, revision 2. It lets the image's
// non-root user gain exactly those three when they are in the container's
// bounding set (--cap-add, securityContext.capabilities.add) and
// no_new_privs is off (allowPrivilegeEscalation). The sink plugins carry no
// such attribute, so they run with no capabilities at all.
func FileCaps() string {
	var perm uint64 = 1<<capNetAdmin | 1<<capPerfmon | 1<<capBPF
	const (
		vfsCapRevision2     = 0x02000000
		vfsCapFlagEffective = 0x000001
	)
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], vfsCapRevision2|vfsCapFlagEffective)
	binary.LittleEndian.PutUint32(b[4:], uint32(perm))      // permitted, caps 0-31
	binary.LittleEndian.PutUint32(b[8:], 0)                 // inheritable, caps 0-31
	binary.LittleEndian.PutUint32(b[12:], uint32(perm>>32)) // permitted, caps 32-63
	binary.LittleEndian.PutUint32(b[16:], 0)                // inheritable, caps 32-63
	return string(b)
}

// ImageName is "flowtap_0.1.0_linux_amd64.oci.tar" for v0.1.0.
func ImageName(version string, p Platform) string {
	return fmt.Sprintf("flowtap_%s_%s.oci.tar", strings.TrimPrefix(version, "v"), p)
}

// ImageTag is the version as an image tag: tags cannot hold "+", so build
// metadata is joined with "-" (v0.1.0+x becomes v0.1.0-x).
func ImageTag(version string) string {
	return strings.ReplaceAll(version, "+", "-")
}

// ImageEntries lists the image's single layer: the programs, a passwd and
// group file naming the non-root user, a world-writable /tmp (the sink
// plugins' sockets live there), the config directory and the licenses.
func (c *Config) ImageEntries(p Platform) ([]Entry, error) {
	bin := filepath.Join(c.BinDir, p.String())
	sinks, err := filepath.Glob(filepath.Join(bin, "flowtap-sink-*"))
	if err != nil {
		return nil, err
	}
	if len(sinks) == 0 {
		return nil, fmt.Errorf("image %s: no flowtap-sink-* programs in %s: %w (hint: make image builds them first)", p, bin, errNoFiles)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nflowtap:x:%d:%d:flowtap:/nonexistent:/sbin/nologin\n", ImageUID, ImageGID)
	group := fmt.Sprintf("root:x:0:\nflowtap:x:%d:\n", ImageGID)
	entries := []Entry{
		{Name: "etc/passwd", Mode: 0o644, Data: []byte(passwd)},
		{Name: "etc/group", Mode: 0o644, Data: []byte(group)},
		{Name: ImageConfigDir, Dir: true, Mode: 0o755},
		{Name: "tmp", Dir: true, Mode: 0o1777},
		{Name: "usr/share/doc/flowtap/LICENSE", Mode: 0o644, Src: filepath.Join(c.Root, "LICENSE")},
		{Name: imageBinDir + "/flowtap", Mode: 0o755, Src: filepath.Join(bin, "flowtap"), Xattrs: map[string]string{"security.capability": FileCaps()}},
	}
	for _, s := range sinks {
		entries = append(entries, Entry{Name: imageBinDir + "/" + filepath.Base(s), Mode: 0o755, Src: s})
	}
	// The BPF programs inside flowtap are dual-licensed: their texts ship too.
	licenses, err := filepath.Glob(filepath.Join(c.Root, "LICENSES", "*"))
	if err != nil {
		return nil, err
	}
	for _, l := range licenses {
		entries = append(entries, Entry{Name: "usr/share/doc/flowtap/LICENSES/" + filepath.Base(l), Mode: 0o644, Src: l})
	}
	for _, e := range entries {
		if e.Src != "" {
			if err := checkFile(e.Src); err != nil {
				return nil, fmt.Errorf("image %s: %w", p, err)
			}
		}
	}
	return entries, nil
}

// Image builds the image for p and returns it.
func (c *Config) Image(p Platform) (v1.Image, error) {
	entries, err := c.ImageEntries(p)
	if err != nil {
		return nil, err
	}
	var layerTar bytes.Buffer
	if err := WriteTar(&layerTar, entries, c.Epoch); err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", p, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", p, err)
	}
	created := v1.Time{Time: c.Epoch.UTC()}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "make image (tools/release)", Comment: "flowtap " + c.Version},
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", p, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", p, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = p.OS, p.Arch
	if p.Arch == "arm64" {
		cf.Variant = "v8"
	}
	cf.Created = created
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", ImageUID, ImageGID),
		Entrypoint: []string{"/" + imageBinDir + "/flowtap"},
		Cmd:        []string{"run"},
		Env:        []string{"PATH=/" + imageBinDir},
		WorkingDir: "/",
		Labels:     c.imageLabels(),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", p, err)
	}
	return img, nil
}

// imageLabels are the OCI annotation keys, set as labels in the config
// (what 'podman inspect' shows) and as annotations on the manifest.
func (c *Config) imageLabels() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "flowtap",
		"org.opencontainers.image.description": "eBPF TCP flow agent: connection events from the kernel to sink plugins",
		"org.opencontainers.image.version":     c.Version,
		"org.opencontainers.image.revision":    c.Commit,
		"org.opencontainers.image.created":     c.Epoch.UTC().Format(time.RFC3339),
		"org.opencontainers.image.licenses":    "Apache-2.0 AND (GPL-2.0-only OR BSD-2-Clause)",
		"org.opencontainers.image.source":      "https://github.com/flowtap/flowtap",
	}
}

// WriteImage writes the image for p into OutDir as an OCI archive (a tar
// of an OCI image layout, what 'podman load' and
// 'skopeo copy oci-archive:FILE ...' read), its index naming it
// flowtap:<ImageTag(version)>. It returns the archive's path.
func (c *Config) WriteImage(p Platform) (string, error) {
	if err := CheckVersion(c.Version); err != nil {
		return "", err
	}
	img, err := c.Image(p)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "flowtap-image-")
	if err != nil {
		return "", fmt.Errorf("image %s: %w", p, err)
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return "", fmt.Errorf("image %s: OCI layout: %w", p, err)
	}
	anns := map[string]string{"org.opencontainers.image.ref.name": "flowtap:" + ImageTag(c.Version)}
	plat := v1.Platform{OS: p.OS, Architecture: p.Arch}
	if p.Arch == "arm64" {
		plat.Variant = "v8"
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(anns), layout.WithPlatform(plat)); err != nil {
		return "", fmt.Errorf("image %s: OCI layout: %w", p, err)
	}
	entries, err := dirEntries(dir)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", p, err)
	}
	if err := os.MkdirAll(c.OutDir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", c.OutDir, err)
	}
	dst := filepath.Join(c.OutDir, ImageName(c.Version, p))
	if err := writeFileAtomic(dst, func(w io.Writer) error { return WriteTar(w, entries, c.Epoch) }); err != nil {
		return "", err
	}
	return dst, nil
}

// dirEntries lists every regular file under dir as archive entries with
// paths relative to dir.
func dirEntries(dir string) ([]Entry, error) {
	var out []Entry
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		out = append(out, Entry{Name: filepath.ToSlash(rel), Mode: 0o644, Src: path})
		return nil
	})
	return out, err
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"
)

// The Kubernetes examples under deploy/kubernetes are checked here: every
// document decodes, every Deployment that runs the gateway has probes,
// ports, mounts and a configuration the gateway actually serves, and every
// container of every Pod template can read the Secret and ConfigMap files it
// mounts.

const kubernetesDir = repoRoot + "/deploy/kubernetes"

// k8sObject is the part of a Kubernetes object the tests read.
type k8sObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
	Spec json.RawMessage   `json:"spec"`
}

type k8sDeploymentSpec struct {
	Replicas *int `json:"replicas"`
	Strategy struct {
		Type string `json:"type"`
	} `json:"strategy"`
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	Template struct {
		Metadata struct {
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec k8sPodSpec `json:"spec"`
	} `json:"template"`
}

type k8sPodSpec struct {
	SecurityContext struct {
		RunAsNonRoot *bool  `json:"runAsNonRoot"`
		RunAsUser    *int64 `json:"runAsUser"`
	} `json:"securityContext"`
	Containers []k8sContainer `json:"containers"`
	Volumes    []struct {
		Name      string `json:"name"`
		ConfigMap *struct {
			Name string `json:"name"`
		} `json:"configMap"`
		Secret                *json.RawMessage `json:"secret"`
		PersistentVolumeClaim *json.RawMessage `json:"persistentVolumeClaim"`
		EmptyDir              *json.RawMessage `json:"emptyDir"`
	} `json:"volumes"`
}

type k8sContainer struct {
	Name  string   `json:"name"`
	Args  []string `json:"args"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	LivenessProbe   *k8sProbe `json:"livenessProbe"`
	ReadinessProbe  *k8sProbe `json:"readinessProbe"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool  `json:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool  `json:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool  `json:"runAsNonRoot"`
		RunAsUser                *int64 `json:"runAsUser"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
		ReadOnly  bool   `json:"readOnly"`
	} `json:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"` // a number or a port name
	} `json:"httpGet"`
}

type k8sServiceSpec struct {
	Selector        map[string]string `json:"selector"`
	SessionAffinity string            `json:"sessionAffinity"`
	Ports           []struct {
		Port       int `json:"port"`
		TargetPort any `json:"targetPort"`
	} `json:"ports"`
}

// decodeYAML decodes every document of a YAML stream into k8sObjects.
func decodeYAML(t testing.TB, r io.Reader) []k8sObject {
	t.Helper()
	dec := yaml.NewDecoder(r)
	var out []k8sObject
	for i := 0; ; i++ {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if doc == nil {
			continue // an empty document
		}
		j, err := json.Marshal(jsonable(doc))
		if err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var o k8sObject
		if err := json.Unmarshal(j, &o); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Errorf("document %d: apiVersion %q, kind %q, metadata.name %q; want all three", i, o.APIVersion, o.Kind, o.Metadata.Name)
		}
		out = append(out, o)
	}
}

// jsonable turns yaml.v2's map[any]any into map[string]any, recursively.
func jsonable(v any) any {
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[fmt.Sprint(k)] = jsonable(x)
		}
		return m
	case []any:
		for i := range v {
			v[i] = jsonable(v[i])
		}
	}
	return v
}

func TestKubernetesExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(kubernetesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no YAML files in %s", kubernetesDir)
	}
	sawSidecar, mounts := false, 0
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			objs := decodeYAML(t, f)
			problems, n := unreadableMountedFiles(t, objs)
			mounts += n
			for _, p := range problems {
				t.Error(p)
			}
			for _, o := range objs {
				if o.Kind == "Deployment" && checkGatewayDeployment(t, o, objs) && filepath.Base(file) == "sidecar.yaml" {
					sawSidecar = true
				}
			}
		})
	}
	if !sawSidecar {
		t.Error("sidecar.yaml has no Deployment running the gateway")
	}
	if mounts == 0 {
		t.Error("no Secret or ConfigMap mount found in any Pod template: the readability check checked nothing")
	}
}

// checkGatewayDeployment checks a Deployment that runs the gateway (a
// container whose args start with serve) against the other objects of its
// file, and reports whether it found one.
func checkGatewayDeployment(t *testing.T, o k8sObject, objs []k8sObject) bool {
	t.Helper()
	var spec k8sDeploymentSpec
	if err := json.Unmarshal(o.Spec, &spec); err != nil {
		t.Fatalf("Deployment %s: %v", o.Metadata.Name, err)
	}
	pod := spec.Template.Spec
	var gw *k8sContainer
	for i, c := range pod.Containers {
		if len(c.Args) > 0 && c.Args[0] == "serve" {
			gw = &pod.Containers[i]
		}
	}
	if gw == nil {
		return false
	}
	name := "Deployment " + o.Metadata.Name + ", container " + gw.Name

	// Security: non-root, read-only root filesystem, no privilege escalation.
	nonRoot := gw.SecurityContext.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = pod.SecurityContext.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		t.Errorf("%s: runAsNonRoot is not true", name)
	}
	if p := gw.SecurityContext.ReadOnlyRootFilesystem; p == nil || !*p {
		t.Errorf("%s: readOnlyRootFilesystem is not true", name)
	}
	if p := gw.SecurityContext.AllowPrivilegeEscalation; p == nil || *p {
		t.Errorf("%s: allowPrivilegeEscalation is not false", name)
	}

	// The configuration: --config names a file of a ConfigMap mounted in
	// the container.
	mountOf := func(p string) (mountPath, volume string, readOnly bool) {
		for _, m := range gw.VolumeMounts {
			if p == m.MountPath || strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
				if len(m.MountPath) > len(mountPath) {
					mountPath, volume, readOnly = m.MountPath, m.Name, m.ReadOnly
				}
			}
		}
		return mountPath, volume, readOnly
	}
	configPath := ""
	for i, a := range gw.Args {
		if (a == "--config" || a == "-config") && i+1 < len(gw.Args) {
			configPath = gw.Args[i+1]
		}
	}
	if configPath == "" {
		t.Fatalf("%s: args %q have no --config FILE", name, gw.Args)
	}
	mp, vol, _ := mountOf(configPath)
	var toml string
	for _, v := range pod.Volumes {
		if v.Name != vol || v.ConfigMap == nil || mp == "" {
			continue
		}
		for _, cm := range objs {
			if cm.Kind == "ConfigMap" && cm.Metadata.Name == v.ConfigMap.Name {
				toml = cm.Data[strings.TrimPrefix(configPath, strings.TrimSuffix(mp, "/")+"/")]
			}
		}
	}
	if toml == "" {
		t.Fatalf("%s: --config %s is not a key of a ConfigMap of this file mounted there", name, configPath)
	}
	dir := t.TempDir()
	cfg, err := LoadConfig(writeFile(t, dir, "gateway.toml", toml))
	if err != nil {
		t.Fatalf("%s: the ConfigMap's gateway.toml: %v", name, err)
	}

	// Every file it names is mounted; the store on a writable volume (the
	// root filesystem is read-only), the rest read-only.
	files := map[string]string{"tokens.key_file": cfg.Tokens.KeyFile, "login.users_file": cfg.Login.UsersFile,
		"admin.token_file": cfg.Admin.TokenFile, "server.tls_cert_file": cfg.Server.TLSCertFile, "server.tls_key_file": cfg.Server.TLSKeyFile}
	for i, f := range cfg.Tokens.VerifyKeyFiles {
		files[fmt.Sprintf("tokens.verify_key_files[%d]", i)] = f
	}
	for key, f := range files {
		if f == "" {
			continue
		}
		if mp, _, ro := mountOf(f); mp == "" || !ro {
			t.Errorf("%s: %s %s is not on a read-only volume mount", name, key, f)
		}
	}
	if cfg.Store.Backend == BackendBbolt {
		mp, vol, ro := mountOf(cfg.Store.Path)
		if mp == "" || ro {
			t.Errorf("%s: store.path %s is not on a writable volume mount", name, cfg.Store.Path)
		}
		for _, v := range pod.Volumes {
			if v.Name == vol && v.PersistentVolumeClaim != nil && spec.Strategy.Type != "Recreate" {
				t.Errorf("%s: a bbolt store on a PersistentVolumeClaim needs strategy Recreate, not %q: the new Pod cannot open the file the old one holds", name, spec.Strategy.Type)
			}
		}
	}

	// The shape is valid once the mounted files are replaced by local ones.
	local := cfg
	local.Tokens.KeyFile = writeKey(t, dir, "signing.pem", cfg.Tokens.Algorithm)
	local.Tokens.VerifyKeyFiles = nil
	for i := range cfg.Tokens.VerifyKeyFiles {
		local.Tokens.VerifyKeyFiles = append(local.Tokens.VerifyKeyFiles, writeKey(t, dir, fmt.Sprintf("verify%d.pem", i), cfg.Tokens.Algorithm))
	}
	if cfg.Login.UsersFile != "" {
		local.Login.UsersFile = writeUsers(t, dir, "users")
	}
	if cfg.Admin.TokenFile != "" {
		local.Admin.TokenFile = writeFile(t, dir, "admin-token", testAdminToken)
	}
	if cfg.Server.TLS() {
		t.Fatalf("%s: TLS in an example: teach this test to make a certificate", name)
	}
	if cfg.Store.Backend == BackendBbolt {
		local.Store.Path = filepath.Join(dir, "gateway.db")
	}
	if err := local.Validate(); err != nil {
		t.Fatalf("%s: the ConfigMap's gateway.toml does not validate: %v", name, err)
	}
	if err := checkFileContents(&local, nil); err != nil {
		t.Fatalf("%s: %v", name, err)
	}

	// Ports: the probes are on the admin listener, the Service on the main one.
	portNumber := func(p any) int {
		switch p := p.(type) {
		case float64:
			return int(p)
		case string:
			for _, cp := range gw.Ports {
				if cp.Name == p {
					return cp.ContainerPort
				}
			}
		}
		return -1
	}
	listenPort := func(addr string) int {
		_, port, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(port)
		return n
	}
	mainPort, adminPort := listenPort(cfg.Server.Listen), listenPort(cfg.Admin.Listen)
	for _, l := range []string{cfg.Server.Listen, cfg.Admin.Listen} {
		if host, _, _ := net.SplitHostPort(l); host == "127.0.0.1" || host == "localhost" {
			t.Errorf("%s: %s listens on loopback: the kubelet and the Service cannot reach it", name, l)
		}
	}
	probes := map[string]*k8sProbe{"/healthz": gw.LivenessProbe, "/readyz": gw.ReadinessProbe}
	for want, p := range probes {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no httpGet probe for %s", name, want)
			continue
		}
		if p.HTTPGet.Path != want {
			t.Errorf("%s: probe path %s, want %s", name, p.HTTPGet.Path, want)
		}
		if got := portNumber(p.HTTPGet.Port); got != adminPort {
			t.Errorf("%s: probe %s on port %v (%d), want admin.listen's %d", name, p.HTTPGet.Path, p.HTTPGet.Port, got, adminPort)
		}
	}
	ann := spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(adminPort) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("%s: Prometheus annotations %v, want scrape true on port %d, path /metrics", name, ann, adminPort)
	}
	selects := func(sel map[string]string) bool {
		for k, v := range sel {
			if spec.Template.Metadata.Labels[k] != v {
				return false
			}
		}
		return len(sel) > 0
	}
	services, affinity := 0, false
	for _, s := range objs {
		if s.Kind != "Service" {
			continue
		}
		var ss k8sServiceSpec
		if err := json.Unmarshal(s.Spec, &ss); err != nil {
			t.Fatalf("Service %s: %v", s.Metadata.Name, err)
		}
		if !selects(ss.Selector) {
			continue
		}
		services++
		affinity = affinity || ss.SessionAffinity == "ClientIP"
		for _, p := range ss.Ports {
			if got := portNumber(p.TargetPort); got != mainPort {
				t.Errorf("Service %s: port %d targets %v (%d), want the gateway's server.listen port %d", s.Metadata.Name, p.Port, p.TargetPort, got, mainPort)
			}
		}
	}
	if services == 0 {
		t.Errorf("%s: no Service selects the Pod", name)
	}
	if spec.Replicas != nil && *spec.Replicas > 1 && cfg.Store.Backend == BackendBbolt && !affinity {
		t.Errorf("%s: %d replicas with a bbolt store per Pod need store.backend = \"redis\" or sessionAffinity", name, *spec.Replicas)
	}

	// Finally the gateway runs from this configuration and answers the
	// probes and the scrape on its admin listener.
	if cfg.Store.Backend != BackendBbolt {
		return true
	}
	local.Server.Listen, local.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	local.Server.DrainDelay = 0
	g := startMain(t, local)
	for _, p := range []string{gw.LivenessProbe.HTTPGet.Path, gw.ReadinessProbe.HTTPGet.Path, ann["prometheus.io/path"]} {
		if code, body, _ := g.request("GET", g.admin+path.Clean("/"+p), ""); code != http.StatusOK {
			t.Errorf("%s: GET %s on the admin listener: %d %q, want 200", name, p, code, body)
		}
	}
	return true
}

// The files of Secret and ConfigMap volumes: who may read them.
//
// A Secret or ConfigMap volume's files belong to root, and to the group
// fsGroup when the Pod sets one (else to root's group); their mode is the
// item's mode, else the volume's defaultMode, else 0644. A container reads
// them as its runAsUser with its runAsGroup (the container's
// securityContext over the Pod's), plus fsGroup and supplementalGroups as
// supplementary groups. Linux then applies the owner bits if the uid is the
// owner's, else the group bits if one of its groups is the file's, else the
// other bits. (With fsGroup the kubelet may also add group read to the
// files; the check does not count on it.)

// k8sSecurityContext holds the identity fields of a Pod's or a container's
// securityContext (a container has no fsGroup or supplementalGroups).
type k8sSecurityContext struct {
	RunAsUser          *int64  `json:"runAsUser"`
	RunAsGroup         *int64  `json:"runAsGroup"`
	FSGroup            *int64  `json:"fsGroup"`
	SupplementalGroups []int64 `json:"supplementalGroups"`
}

type k8sKeyToPath struct {
	Key  string `json:"key"`
	Path string `json:"path"`
	Mode *int32 `json:"mode"`
}

// k8sFileSource is a secret or configMap volume, or one source of a
// projected volume.
type k8sFileSource struct {
	SecretName  string         `json:"secretName"` // secret volume
	Name        string         `json:"name"`       // configMap volume, projected sources
	Items       []k8sKeyToPath `json:"items"`
	DefaultMode *int32         `json:"defaultMode"`
}

type k8sFilePod struct {
	SecurityContext k8sSecurityContext `json:"securityContext"`
	InitContainers  []k8sFileContainer `json:"initContainers"`
	Containers      []k8sFileContainer `json:"containers"`
	Volumes         []struct {
		Name      string         `json:"name"`
		Secret    *k8sFileSource `json:"secret"`
		ConfigMap *k8sFileSource `json:"configMap"`
		Projected *struct {
			DefaultMode *int32 `json:"defaultMode"`
			Sources     []struct {
				Secret    *k8sFileSource `json:"secret"`
				ConfigMap *k8sFileSource `json:"configMap"`
			} `json:"sources"`
		} `json:"projected"`
	} `json:"volumes"`
}

type k8sFileContainer struct {
	Name            string             `json:"name"`
	SecurityContext k8sSecurityContext `json:"securityContext"`
	VolumeMounts    []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

// k8sMountedFile is one file (or, with key "*", every file) of a Secret or
// ConfigMap volume.
type k8sMountedFile struct {
	what string // "Secret NAME key K", for messages
	mode uint32
}

// podSpecs finds every Pod spec in an object's spec: the spec of a Pod, the
// template of a Deployment, StatefulSet, DaemonSet or Job, the job template
// of a CronJob; any object holding "containers".
func podSpecs(t testing.TB, o k8sObject) []k8sFilePod {
	t.Helper()
	var spec any
	if err := json.Unmarshal(o.Spec, &spec); err != nil || spec == nil {
		return nil
	}
	var pods []k8sFilePod
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["containers"].([]any); ok {
				j, _ := json.Marshal(v)
				var p k8sFilePod
				if err := json.Unmarshal(j, &p); err != nil {
					t.Fatalf("%s %s: pod spec: %v", o.Kind, o.Metadata.Name, err)
				}
				pods = append(pods, p)
				return
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(spec)
	return pods
}

// volumeFiles lists the files a Secret, ConfigMap or projected volume puts
// in the container, with their modes. keys gives the keys of the
// ConfigMaps defined beside the Pod (a Secret's keys are not in the
// manifest: then one entry, "every file", stands for them all).
func volumeFiles(kind string, src *k8sFileSource, defaultMode *int32, keys map[string][]string) []k8sMountedFile {
	name := src.Name
	if kind == "Secret" && src.SecretName != "" {
		name = src.SecretName
	}
	mode := uint32(0o644) // Kubernetes' default
	if defaultMode != nil {
		mode = uint32(*defaultMode)
	}
	if src.DefaultMode != nil {
		mode = uint32(*src.DefaultMode)
	}
	var out []k8sMountedFile
	if len(src.Items) > 0 {
		for _, it := range src.Items {
			m := mode
			if it.Mode != nil {
				m = uint32(*it.Mode)
			}
			out = append(out, k8sMountedFile{fmt.Sprintf("%s %s key %s (as %s)", kind, name, it.Key, it.Path), m})
		}
		return out
	}
	if ks, ok := keys[kind+"/"+name]; ok {
		for _, k := range ks {
			out = append(out, k8sMountedFile{fmt.Sprintf("%s %s key %s", kind, name, k), mode})
		}
		return out
	}
	return []k8sMountedFile{{fmt.Sprintf("every file of %s %s", kind, name), mode}}
}

// fileReadable reports whether a process of uid (nil: the image's user,
// unknown here) and groups reads a file of mode owned by 0:ownerGroup, and
// an error when the answer depends on the unknown uid.
func fileReadable(uid *int64, groups []int64, ownerGroup int64, mode uint32) (bool, error) {
	if mode&0o004 != 0 {
		return true, nil // anyone
	}
	if uid == nil {
		return false, errors.New("no runAsUser: whether it can be read depends on the image's user; set runAsUser")
	}
	if *uid == 0 {
		return mode&0o400 != 0, nil
	}
	for _, g := range groups {
		if g == ownerGroup {
			return mode&0o040 != 0, nil
		}
	}
	return false, nil
}

// unreadableMountedFiles checks, for every container of every Pod template
// in objs, that each Secret and ConfigMap file it mounts is readable by the
// container's user. It returns a line per file that is not (or may not be),
// and how many such mounts it checked.
func unreadableMountedFiles(t testing.TB, objs []k8sObject) (problems []string, checked int) {
	t.Helper()
	keys := map[string][]string{} // "ConfigMap/NAME" -> its keys
	for _, o := range objs {
		if o.Kind == "ConfigMap" {
			for k := range o.Data {
				keys["ConfigMap/"+o.Metadata.Name] = append(keys["ConfigMap/"+o.Metadata.Name], k)
			}
		}
	}
	for _, o := range objs {
		for _, pod := range podSpecs(t, o) {
			psc := pod.SecurityContext
			ownerGroup := int64(0)
			if psc.FSGroup != nil {
				ownerGroup = *psc.FSGroup
			}
			for _, c := range append(append([]k8sFileContainer{}, pod.InitContainers...), pod.Containers...) {
				uid, gid := psc.RunAsUser, psc.RunAsGroup
				if c.SecurityContext.RunAsUser != nil {
					uid = c.SecurityContext.RunAsUser
				}
				if c.SecurityContext.RunAsGroup != nil {
					gid = c.SecurityContext.RunAsGroup
				}
				// Without runAsGroup the primary group is the image's: not
				// known here, so it matches no file.
				var groups []int64
				if gid != nil {
					groups = append(groups, *gid)
				}
				if psc.FSGroup != nil {
					groups = append(groups, *psc.FSGroup)
				}
				groups = append(groups, psc.SupplementalGroups...)

				for _, vm := range c.VolumeMounts {
					var files []k8sMountedFile
					for _, v := range pod.Volumes {
						if v.Name != vm.Name {
							continue
						}
						switch {
						case v.Secret != nil:
							files = volumeFiles("Secret", v.Secret, nil, keys)
						case v.ConfigMap != nil:
							files = volumeFiles("ConfigMap", v.ConfigMap, nil, keys)
						case v.Projected != nil:
							for _, s := range v.Projected.Sources {
								if s.Secret != nil {
									files = append(files, volumeFiles("Secret", s.Secret, v.Projected.DefaultMode, keys)...)
								}
								if s.ConfigMap != nil {
									files = append(files, volumeFiles("ConfigMap", s.ConfigMap, v.Projected.DefaultMode, keys)...)
								}
							}
						}
					}
					if len(files) > 0 {
						checked++
					}
					for _, f := range files {
						ok, err := fileReadable(uid, groups, ownerGroup, f.mode)
						where := fmt.Sprintf("%s %s, container %s, mount %s: %s, mode %04o, owner 0:%d", o.Kind, o.Metadata.Name, c.Name, vm.MountPath, f.what, f.mode, ownerGroup)
						switch {
						case err != nil:
							problems = append(problems, fmt.Sprintf("%s: %v", where, err))
						case !ok:
							problems = append(problems, fmt.Sprintf("%s: not readable by uid %d with groups %v (set the Pod's fsGroup to a group of the container, or widen the mode)", where, *uid, groups))
						}
					}
				}
			}
		}
	}
	return problems, checked
}

// TestFileReadable pins the permission rule the manifest check applies.
func TestFileReadable(t *testing.T) {
	id := func(n int64) *int64 { return &n }
	tests := []struct {
		name       string
		uid        *int64
		groups     []int64
		ownerGroup int64
		mode       uint32
		want       bool
		wantErr    bool
	}{
		{"0440 without fsGroup, non-root user", id(65532), []int64{65532}, 0, 0o440, false, false},
		{"0440 with fsGroup the user's", id(65532), []int64{65532, 65532}, 65532, 0o440, true, false},
		{"0440 with fsGroup in supplementalGroups only", id(1000), []int64{1000, 2000}, 2000, 0o440, true, false},
		{"0400 with fsGroup: the group bit is what counts", id(65532), []int64{65532}, 65532, 0o400, false, false},
		{"0400 as root: the owner", id(0), []int64{0}, 0, 0o400, true, false},
		{"0040 as root: owner bits only", id(0), []int64{0}, 0, 0o040, false, false},
		{"0644 default: anyone", id(65532), nil, 0, 0o644, true, false},
		{"0644 with no runAsUser: anyone", nil, nil, 0, 0o644, true, false},
		{"0440 with no runAsUser: unknown", nil, []int64{65532}, 65532, 0o440, false, true},
		{"0444 without fsGroup", id(65532), []int64{65532}, 0, 0o444, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fileReadable(tt.uid, tt.groups, tt.ownerGroup, tt.mode)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("fileReadable(%v, %v, %d, %04o) = %v, %v; want %v, error %v", tt.uid, tt.groups, tt.ownerGroup, tt.mode, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestKubernetesMountedFilesCheck runs the manifest check on a Pod like the
// two-replica example before its fix (uid 65532, a Secret at 0440, no
// fsGroup), and on variants that set the identity elsewhere.
func TestKubernetesMountedFilesCheck(t *testing.T) {
	const pod = `
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {gateway.toml: "x", other: "y"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  template:
    spec:
      securityContext: {POD}
      containers:
        - name: gateway
          CONTAINER
          volumeMounts:
            - {name: secrets, mountPath: /s}
            - {name: config, mountPath: /c}
      volumes:
        - name: secrets
          secret: {secretName: s, defaultMode: 0440 ITEMS}
        - name: config
          configMap: {name: cfg}
`
	const nonroot = "runAsUser: 65532, runAsGroup: 65532"
	tests := []struct {
		name, pod, container, items string
		wantFail                    bool
	}{
		{"0440 without fsGroup", nonroot, "", "", true},
		{"0440 with fsGroup", nonroot + ", fsGroup: 65532", "", "", false},
		{"fsGroup is also a supplementary group", nonroot + ", fsGroup: 1000", "", "", false},
		{"supplementalGroups holding the owner group root", nonroot + ", supplementalGroups: [0]", "", "", false},
		{"an item's mode over defaultMode", nonroot + ", fsGroup: 65532", "", ", items: [{key: k, path: k, mode: 0400}]", true},
		{"the container's runAsUser over the Pod's", "runAsUser: 0", "securityContext: {runAsUser: 65532}", "", true},
		{"the container's runAsUser root over the Pod's", nonroot, "securityContext: {runAsUser: 0}", "", false},
		{"the container's runAsGroup over the Pod's", nonroot, "securityContext: {runAsGroup: 0}", "", false},
		{"no runAsUser anywhere", "runAsNonRoot: true", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := strings.NewReplacer("POD", tt.pod, "CONTAINER", tt.container, " ITEMS", tt.items).Replace(pod)
			objs := decodeYAML(t, strings.NewReader(y))
			problems, n := unreadableMountedFiles(t, objs)
			if n != 2 {
				t.Errorf("checked %d mounts, want 2", n)
			}
			if failed := len(problems) > 0; failed != tt.wantFail {
				t.Errorf("check failed = %v (%q), want %v", failed, problems, tt.wantFail)
			}
		})
	}
}

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
// document decodes, and every Deployment that runs the gateway has probes,
// ports, mounts and a configuration the gateway actually serves.

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
	sawSidecar := false
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			objs := decodeYAML(t, f)
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

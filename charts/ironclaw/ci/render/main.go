// Command render renders the IronClaw chart's templates with Go's text/template and the
// sprig function library (the engine and functions Helm itself uses), for tests on machines
// without a helm binary. It implements the parts of Helm the chart uses: .Values (values.yaml
// plus --set-string overrides), .Release, .Chart, .Capabilities.KubeVersion, .Files.Get,
// include, toYaml, required. Output: the rendered manifests as one multi-document stream.
//
// Usage: render CHART_DIR [--kube-version v1.20.2] [--namespace NS] [--release NAME]
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "render: "+format+"\n", a...)
	os.Exit(1)
}

// normalise turns yaml.v2's map[interface{}]interface{} into map[string]interface{}.
func normalise(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := map[string]interface{}{}
		for k, val := range t {
			m[fmt.Sprint(k)] = normalise(val)
		}
		return m
	case []interface{}:
		for i := range t {
			t[i] = normalise(t[i])
		}
		return t
	default:
		return v
	}
}

func main() {
	if len(os.Args) < 2 {
		die("usage: render CHART_DIR [--kube-version vX.Y.Z] [--namespace NS] [--release NAME]")
	}
	dir := os.Args[1]
	kube, ns, rel := "v1.20.2", "ironclaw-system", "ironclaw"
	for i := 2; i+1 < len(os.Args); i += 2 {
		switch os.Args[i] {
		case "--kube-version":
			kube = os.Args[i+1]
		case "--namespace":
			ns = os.Args[i+1]
		case "--release":
			rel = os.Args[i+1]
		default:
			die("unknown flag %s", os.Args[i])
		}
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			die("%v", err)
		}
		return b
	}
	var chart, values map[interface{}]interface{}
	if err := yaml.Unmarshal(read("Chart.yaml"), &chart); err != nil {
		die("Chart.yaml: %v", err)
	}
	if err := yaml.Unmarshal(read("values.yaml"), &values); err != nil {
		die("values.yaml: %v", err)
	}
	c := normalise(chart).(map[string]interface{})
	parts := strings.SplitN(strings.TrimPrefix(kube, "v"), ".", 3)
	if len(parts) < 2 {
		die("--kube-version %q: expected vMAJOR.MINOR.PATCH", kube)
	}
	data := map[string]interface{}{
		"Values":  normalise(values),
		"Release": map[string]interface{}{"Name": rel, "Namespace": ns, "Service": "Helm"},
		"Chart": map[string]interface{}{
			"Name": c["name"], "Version": c["version"], "AppVersion": c["appVersion"],
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": kube, "Major": parts[0], "Minor": parts[1]},
		},
		"Files": files{dir: dir},
	}
	tpl := template.New("chart").Funcs(sprig.TxtFuncMap())
	tpl.Funcs(template.FuncMap{
		"toYaml": func(v interface{}) string {
			b, err := yaml.Marshal(v)
			if err != nil {
				die("toYaml: %v", err)
			}
			return strings.TrimSuffix(string(b), "\n")
		},
		"include": func(name string, d interface{}) (string, error) {
			var buf bytes.Buffer
			err := tpl.ExecuteTemplate(&buf, name, d)
			return buf.String(), err
		},
		"required": func(msg string, v interface{}) (interface{}, error) {
			if v == nil || v == "" {
				return nil, fmt.Errorf("%s", msg)
			}
			return v, nil
		},
	})
	tpl.Option("missingkey=error")
	paths, _ := filepath.Glob(filepath.Join(dir, "templates", "*"))
	sort.Strings(paths)
	for _, p := range paths {
		b := read(filepath.Join("templates", filepath.Base(p)))
		if _, err := tpl.New(filepath.Base(p)).Parse(string(b)); err != nil {
			die("%s: %v", p, err)
		}
	}
	for _, p := range paths {
		name := filepath.Base(p)
		if strings.HasPrefix(name, "_") {
			continue
		}
		var buf bytes.Buffer
		if err := tpl.ExecuteTemplate(&buf, name, data); err != nil {
			die("%s: %v", name, err)
		}
		out := strings.TrimSpace(buf.String())
		if out != "" {
			fmt.Printf("---\n# Source: ironclaw/templates/%s\n%s\n", name, out)
		}
	}
}

type files struct{ dir string }

// Get returns a file of the chart, like Helm's .Files.Get.
func (f files) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.dir, name))
	if err != nil {
		die(".Files.Get %s: %v", name, err)
	}
	return string(b)
}

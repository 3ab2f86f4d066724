// deploy-check validates tidal's deployment artefacts with the loaders the real tools use:
//
//	deploy-check compose FILE      the Compose Specification loader of `docker compose`
//	                               (compose-go: schema, interpolation, merge keys), then prints
//	                               the resolved services as JSON
//	deploy-check kubernetes FILE…  every document decoded strictly into its API type (k8s.io/api,
//	                               KEDA, prometheus-operator): unknown or mistyped fields fail
//
// It exits 1 with the problems listed, so tests/deploy.rs can assert on them.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: deploy-check compose FILE | kubernetes FILE...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "compose":
		err = checkCompose(os.Args[2])
	case "kubernetes":
		err = checkKubernetes(os.Args[2:])
	default:
		err = fmt.Errorf("unknown check %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func checkCompose(file string) error {
	options, err := cli.NewProjectOptions([]string{file}, cli.WithOsEnv, cli.WithDotEnv, cli.WithName("tidal"))
	if err != nil {
		return err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	out, err := json.MarshalIndent(project, "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	return nil
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// newObject returns the typed object for an apiVersion/kind, or nil when it is not known here.
func newObject(meta typeMeta) any {
	switch meta.APIVersion + "/" + meta.Kind {
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}
	case "batch/v1/Job":
		return &batchv1.Job{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "rbac.authorization.k8s.io/v1/Role":
		return &rbacv1.Role{}
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return &rbacv1.RoleBinding{}
	case "monitoring.coreos.com/v1/PodMonitor":
		return &monitoringv1.PodMonitor{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "keda.sh/v1alpha1/ScaledObject":
		return &kedav1alpha1.ScaledObject{}
	case "keda.sh/v1alpha1/TriggerAuthentication":
		return &kedav1alpha1.TriggerAuthentication{}
	}
	return nil
}

func checkKubernetes(files []string) error {
	var problems []error
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		reader := utilyaml.NewYAMLReader(bufioReader(data))
		for index := 0; ; index++ {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			where := fmt.Sprintf("%s document %d", filepath.Base(file), index)
			var meta typeMeta
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				problems = append(problems, fmt.Errorf("%s: %w", where, err))
				continue
			}
			object := newObject(meta)
			if object == nil {
				problems = append(problems, fmt.Errorf("%s: unknown kind %s %s", where, meta.APIVersion, meta.Kind))
				continue
			}
			if err := yaml.UnmarshalStrict(doc, object); err != nil {
				problems = append(problems, fmt.Errorf("%s (%s): %w", where, meta.Kind, err))
				continue
			}
			fmt.Printf("%s\t%s\t%s\n", filepath.Base(file), meta.Kind, name(doc))
		}
	}
	return errors.Join(problems...)
}

func name(doc []byte) string {
	var object struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	_ = yaml.Unmarshal(doc, &object)
	return object.Metadata.Name
}

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }

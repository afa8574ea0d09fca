// Package packer_test checks the image templates with Debian's real packer and the
// provisioning scripts with bash.
package packer_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gvisor-bootstrap/gvisor-bootstrap/test/testbin"
)

// buildAzure runs packer/build-azure.sh with exactly env (plus PATH and HOME).
func buildAzure(t *testing.T, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("bash", "build-azure.sh")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func azureEnv(t *testing.T) []string {
	bin := filepath.Join(t.TempDir(), "gvisor-bootstrap")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{
		"AZURE_SUBSCRIPTION_ID=00000000-0000-0000-0000-000000000000", "AZURE_RESOURCE_GROUP=rg-images",
		"AZURE_GALLERY=gallery", "AZURE_IMAGE_DEFINITION=ubuntu-gvisor", "IMAGE_VERSION=1.0.0",
		"REPLICATION_REGIONS=westeurope,northeurope", "TAGS_JSON={\"team\":\"platform\"}",
		"BINARY=" + bin,
	}
}

// TestPackerValidate runs the full `packer validate` (not -syntax-only: Debian's
// packer 1.6.6 has the azure-arm and qemu builders built in, so it checks every
// builder's configuration) on the templates, with the variables build-azure.sh passes,
// for both base images.
func TestPackerValidate(t *testing.T) {
	testbin.Require(t, "packer")
	for _, base := range []string{"ubuntu-2204", "ubuntu-2404"} {
		env := append(azureEnv(t), "VALIDATE=1", "BASE="+base, "MANAGED_IMAGE_NAME=gvisor-node",
			"CONTAINERD_SHA256="+strings.Repeat("ab", 32))
		if out, err := buildAzure(t, env...); err != nil {
			t.Errorf("%s: packer validate: %v\n%s", base, err, out)
		}
	}
}

// TestPackerValidateRejectsBroken proves the validation can fail: a misspelled
// attribute in a copy of the templates.
func TestPackerValidateRejectsBroken(t *testing.T) {
	packer := testbin.Require(t, "packer")
	tmp := t.TempDir()
	if out, err := exec.Command("cp", "-a", "image", "scripts", "release-placeholder", tmp).CombinedOutput(); err != nil {
		t.Fatalf("copy templates: %v\n%s", err, out)
	}
	dir := filepath.Join(tmp, "image")
	src := filepath.Join(dir, "sources.pkr.hcl")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(src, []byte(strings.Replace(string(data), "vm_size ", "vm_sise ", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gvisor-bootstrap")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Full validation: -syntax-only passes on any well-formed HCL, misspellings included.
	cmd := exec.Command(packer, "validate", "-var", "binary_path="+bin, "-var", "config_path="+bin,
		"-var", "subscription_id=s", "-var", "resource_group=rg", "-var", "gallery_name=g",
		"-var", "image_definition=d", "-var", "managed_image_name=m", dir)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("packer validate accepted vm_sise:\n%s", out)
	}
	if !strings.Contains(string(out), "vm_sise") {
		t.Fatalf("packer failed for another reason:\n%s", out)
	}
}

func TestScriptsParse(t *testing.T) {
	scripts, _ := filepath.Glob("scripts/*.sh")
	scripts = append(scripts, "build-azure.sh")
	if len(scripts) < 4 {
		t.Fatalf("scripts: %v", scripts)
	}
	for _, s := range scripts {
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", s, err, out)
		}
		data, _ := os.ReadFile(s)
		if !strings.Contains(string(data), "set -euo pipefail") {
			t.Errorf("%s does not stop on errors (set -euo pipefail)", s)
		}
	}
}

func TestBuildAzureNeedsItsVariables(t *testing.T) {
	out, err := buildAzure(t)
	if err == nil {
		t.Fatalf("build-azure.sh ran without any variables:\n%s", out)
	}
	for _, v := range []string{"AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_GALLERY", "AZURE_IMAGE_DEFINITION", "IMAGE_VERSION"} {
		if !strings.Contains(out, v) {
			t.Errorf("message does not name %s:\n%s", v, out)
		}
	}
	out, err = buildAzure(t, append(azureEnv(t), "DRY_RUN=1", "BASE=ubuntu-2404")...)
	if err == nil || !strings.Contains(out, "CONTAINERD_SHA256") {
		t.Errorf("ubuntu-2404 without a containerd digest: %v\n%s", err, out)
	}
	out, err = buildAzure(t, append(azureEnv(t), "DRY_RUN=1", "IMAGE_VERSION=latest")...)
	if err == nil || !strings.Contains(out, "MAJOR.MINOR.PATCH") {
		t.Errorf("bad IMAGE_VERSION: %v\n%s", err, out)
	}
	// Without az and without a service principal, a real build stops before packer.
	out, err = buildAzure(t, azureEnv(t)...)
	if err == nil || !(strings.Contains(out, "az login") || strings.Contains(out, "ARM_CLIENT_ID")) {
		t.Errorf("no credentials: %v\n%s", err, out)
	}
}

func TestBuildAzureDryRun(t *testing.T) {
	out, err := buildAzure(t, append(azureEnv(t), "DRY_RUN=1")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"packer init", "plugins.pkr.hcl", "packer build -only=azure-arm.ubuntu", "ubuntu-2204.pkrvars.hcl", `replication_regions=\[\"westeurope\"\,\"northeurope\"\]`} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
}

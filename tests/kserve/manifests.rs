//! `deploy/kubernetes/` against the Kubernetes schemas (kubernetes-validate, strict, the newest
//! version it knows), `deploy/kserve/` against KServe's API schemas, and the documents against
//! each other: `tests/python/manifests_check.py` says what each check is.

use crate::support::python::assert_checks_passed;
use crate::support::repo;

use super::{python_check, BOUND};

#[test]
fn every_manifest_validates_strictly_and_agrees_with_the_others() {
    let root = repo(".");
    let out = python_check("manifests_check.py", &[root.as_os_str()], BOUND);
    println!("{}", out.stdout);
    assert_checks_passed(
        &out,
        "manifests_check.py",
        &out.report(),
        &[
            "deployment.yaml: Deployment/tinyserve valid for Kubernetes",
            "hpa.yaml: HorizontalPodAutoscaler/tinyserve valid",
            "pdb.yaml: PodDisruptionBudget/tinyserve valid",
            "service.yaml: Service/tinyserve valid",
            "servingruntime.yaml valid against KServe's ServingRuntime schema",
            "inferenceservice.yaml: valid against KServe's InferenceService schema",
            "inferenceservice-decoder.yaml: valid against KServe's InferenceService schema",
            "kubernetes-validate rejects a misspelt container field",
            "KServe's schema rejects a misspelt field",
        ],
    );
}

"""The parts of the Kubernetes rendering (render/kubernetes.py writes and checks them): what every manifest
shares, the base, the components, each plan's workloads and overlay, and the model converter."""

/** What validation needs to know about the mesh; resources are otherwise validated on their own. */
export interface ValidationContext {
  /** MeshConfig `rootNamespace` (default `istio-system`). */
  readonly rootNamespace: string;
}

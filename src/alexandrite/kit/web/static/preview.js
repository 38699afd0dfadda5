// 3D preview of STL models with three.js: local files (before upload) and server STL (after).
import * as THREE from "three";
import { STLLoader } from "three/addons/loaders/STLLoader.js";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

const viewers = new WeakMap();

function makeViewer(box) {
  if (viewers.has(box)) return viewers.get(box);
  let renderer;
  try {
    renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
  } catch (error) {
    box.querySelector(".placeholder").textContent = "This browser cannot show 3D previews (WebGL is off).";
    return null;
  }
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0xe9ecf3);
  const camera = new THREE.PerspectiveCamera(35, 4 / 3, 0.1, 5000);
  scene.add(new THREE.HemisphereLight(0xffffff, 0x8090a0, 2.2));
  const sun = new THREE.DirectionalLight(0xffffff, 2.0);
  sun.position.set(1, 2, 3);
  camera.add(sun);
  scene.add(camera);
  const controls = new OrbitControls(camera, renderer.domElement);
  controls.enableDamping = true;
  renderer.domElement.setAttribute("role", "img");
  renderer.domElement.setAttribute("aria-label", box.dataset.label || "3D preview of the model; drag to turn it");
  const placeholder = box.querySelector(".placeholder");
  if (placeholder) placeholder.hidden = true;
  box.appendChild(renderer.domElement);
  const material = new THREE.MeshStandardMaterial({ color: box.dataset.color || 0xe8c25a, metalness: 0.55, roughness: 0.35 });
  const viewer = { renderer, scene, camera, controls, material, mesh: null };
  const resize = () => {
    const w = box.clientWidth, h = box.clientHeight || w * 0.75;
    renderer.setSize(w, h, false);
    camera.aspect = w / h;
    camera.updateProjectionMatrix();
  };
  new ResizeObserver(resize).observe(box);
  resize();
  renderer.setAnimationLoop(() => { controls.update(); renderer.render(scene, camera); });
  viewers.set(box, viewer);
  return viewer;
}

export function showGeometry(box, geometry) {
  const viewer = makeViewer(box);
  geometry.computeVertexNormals();
  geometry.computeBoundingBox();
  const bb = geometry.boundingBox;
  const size = new THREE.Vector3(), centre = new THREE.Vector3();
  bb.getSize(size);
  bb.getCenter(centre);
  const facts = { triangles: geometry.attributes.position.count / 3, size_mm: [size.x, size.y, size.z] };
  if (!viewer) return facts;
  if (viewer.mesh) { viewer.scene.remove(viewer.mesh); viewer.mesh.geometry.dispose(); }
  geometry.translate(-centre.x, -centre.y, -centre.z);
  viewer.mesh = new THREE.Mesh(geometry, viewer.material);
  viewer.scene.add(viewer.mesh);
  const radius = Math.max(size.length() / 2, 0.001);
  const distance = radius / Math.sin((viewer.camera.fov * Math.PI) / 360) * 1.1;
  viewer.camera.position.set(distance * 0.7, -distance * 0.5, distance * 0.5);
  viewer.camera.up.set(0, 0, 1);
  viewer.camera.near = distance / 100;
  viewer.camera.far = distance * 100;
  viewer.camera.updateProjectionMatrix();
  viewer.controls.target.set(0, 0, 0);
  viewer.controls.update();
  box.dataset.loaded = String(facts.triangles);
  return facts;
}

export async function loadUrl(box, url) {
  box.setAttribute("aria-busy", "true");
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    return showGeometry(box, new STLLoader().parse(await response.arrayBuffer()));
  } catch (error) {
    const note = box.querySelector(".placeholder");
    if (note) { note.hidden = false; note.textContent = "The preview could not be loaded."; }
    return null;
  } finally {
    box.removeAttribute("aria-busy");
  }
}

function formatFacts(facts) {
  return `${facts.size_mm.map((v) => v.toFixed(1)).join(" × ")} mm, ${facts.triangles.toLocaleString("en")} triangles`;
}

// Thin walls: colour the faces the server found too thin (the page says so in words as well).
async function markWalls(box, url) {
  const viewer = viewers.get(box);
  if (!viewer || !viewer.mesh) return;
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return;
    const walls = await response.json();
    const geometry = viewer.mesh.geometry;
    const count = geometry.attributes.position.count;
    const colours = new Float32Array(count * 3);
    const base = new THREE.Color(box.dataset.color || 0xe8c25a), thin = new THREE.Color(0xd62828);
    for (let i = 0; i < count; i++) base.toArray(colours, i * 3);
    for (const face of walls.thin_faces) {
      for (let k = 0; k < 3; k++) if (face * 3 + k < count) thin.toArray(colours, (face * 3 + k) * 3);
    }
    geometry.setAttribute("color", new THREE.BufferAttribute(colours, 3));
    viewer.mesh.material = viewer.material.clone();
    viewer.mesh.material.color.set(0xffffff);
    viewer.mesh.material.vertexColors = true;
    box.dataset.thinFaces = String(walls.thin_faces.length);
    const note = box.dataset.wallsNote && document.getElementById(box.dataset.wallsNote);
    if (note && walls.thin_faces.length) {
      note.textContent = `${walls.thin_faces.length.toLocaleString("en")} faces with walls thinner than ${walls.minimum_mm} mm are shown in red` +
        (walls.sampled ? " (found by sampling the surface)" : "") + "; the list under the price says where.";
    }
  } catch (error) { /* the words on the page still say where the thin walls are */ }
}

// Order pages: every .viewer[data-stl] loads its model (and its thin walls when asked).
for (const box of document.querySelectorAll(".viewer[data-stl]")) {
  loadUrl(box, box.dataset.stl).then((facts) => { if (facts && box.dataset.walls) markWalls(box, box.dataset.walls); });
}

// Upload form: preview the chosen file locally before it is sent.
const picker = document.querySelector("input[type=file][data-preview]");
if (picker) {
  const box = document.getElementById(picker.dataset.preview);
  const out = document.getElementById(picker.dataset.facts);
  picker.addEventListener("change", async () => {
    const file = picker.files[0];
    if (!file) return;
    if (!/\.stl$/i.test(file.name)) {
      out.textContent = "A preview of OBJ and 3MF files appears after the upload.";
      return;
    }
    try {
      const facts = showGeometry(box, new STLLoader().parse(await file.arrayBuffer()));
      out.textContent = "In your browser: " + formatFacts(facts) + ". The exact figures are checked on upload.";
    } catch (error) {
      out.textContent = "This file could not be read as an STL model; the upload will tell you why.";
    }
  });
}

// Ring constructor: reload the server-made ring when a parameter changes.
const ringForm = document.querySelector("form[data-ring-preview]");
if (ringForm) {
  const box = document.getElementById(ringForm.dataset.ringPreview);
  let timer = null;
  const refresh = () => {
    const params = new URLSearchParams(new FormData(ringForm));
    params.delete("csrf_token");
    loadUrl(box, "/rings/preview.stl?" + params.toString());
  };
  ringForm.addEventListener("change", () => { clearTimeout(timer); timer = setTimeout(refresh, 250); });
  refresh();
}

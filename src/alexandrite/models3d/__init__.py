"""3D model files and geometry: parse STL, OBJ and 3MF into triangles in millimetres, measure and check
them, and make ring meshes. NumPy-based; imports nothing else of the package and no web, database or
messaging library, so every service (and any tool) can use it."""

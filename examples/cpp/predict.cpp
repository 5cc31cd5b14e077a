// Energies and forces of molecules from an e3nn_pyg AOTInductor package, in C++ alone.
//
//   predict OPERATORS PACKAGE ATOMS
//
// OPERATORS: the C++ operator library of e3nn_pyg (libe3nn_pyg_operators.so, built by
//            e3nn_pyg.libtorch.build_operator_library), loaded before the package: the
//            package calls e3nn_pyg::radius_search and e3nn_pyg::native_conv*.
// PACKAGE:   a package written by `e3nn-pyg export --aoti` (save_model(..., aoti=True)) of
//            a model of molecules or, periodic, of crystals, or of the graph-input interface
//            (`e3nn-pyg export --graph-input --aoti`, save_graph_potential(..., aoti=True)),
//            which this program gives the neighbour list: every pair of atoms of a
//            structure closer than the metadata's cutoff, both directions.
// ATOMS:     a text file, one atom a line: `structure Z x y z` (structure numbers 0, 1, ...
//            in order; positions in Å); blank lines and lines starting with '#' are skipped.
//            A periodic package also needs one line a structure before its atoms,
//            `cell structure a1x a1y a1z a2x a2y a2z a3x a3y a3z p1 p2 p3` (lattice vectors
//            as rows, periodic flags 0 or 1).
//
// Prints one line per row of every output of the package, named by its metadata:
// `energy <structure> <value>` and `forces <atom> <fx> <fy> <fz>` for a force model, in
// the units of the metadata (eV and eV/Å by default), with 17 significant digits; then
// `stress <structure>` and its 9 entries (eV/Å^3) for a periodic one. (A
// graph-input package gives the energy of all structures together, `energy 0 <value>`,
// and also `atom_energy` and `pair_forces`.)
#include <dlfcn.h>

#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

struct Atoms {
  std::vector<int64_t> z, batch;
  std::vector<double> pos;   // [N * 3]
  std::vector<double> cell;  // [G * 9], lattice vectors as rows
  std::vector<bool> pbc;     // [G * 3]
};

std::string where(const std::string& path, int number) {
  return path + ":" + std::to_string(number) + ": ";
}

// A line `cell S a1x a1y a1z a2x a2y a2z a3x a3y a3z p1 p2 p3` (S: 0, 1, ... in order).
void read_cell(std::istringstream& fields, const std::string& at, Atoms& atoms) {
  int64_t structure;
  double vectors[9];
  int periodic[3];
  std::string rest;
  bool read = static_cast<bool>(fields >> structure);
  for (double& v : vectors) read = read && static_cast<bool>(fields >> v);
  for (int& p : periodic) read = read && static_cast<bool>(fields >> p) && (p == 0 || p == 1);
  if (!read || (fields >> rest)) {
    throw std::runtime_error(at + "expected `cell structure` and 9 numbers (the lattice vectors "
                                  "as rows) and 3 periodic flags (0 or 1)");
  }
  if (structure != static_cast<int64_t>(atoms.pbc.size() / 3)) {
    throw std::runtime_error(at + "cell of structure " + std::to_string(structure) +
                             " out of order (cells of structures 0, 1, ... in order)");
  }
  atoms.cell.insert(atoms.cell.end(), vectors, vectors + 9);
  for (int p : periodic) atoms.pbc.push_back(p == 1);
}

// A line `structure Z x y z` (structures 0, 1, ... in order, atoms of each together).
void read_atom(std::istringstream& fields, const std::string& at, Atoms& atoms) {
  int64_t structure, z;
  double x, y, w;
  std::string rest;
  if (!(fields >> structure >> z >> x >> y >> w) || (fields >> rest)) {
    throw std::runtime_error(at + "expected `structure Z x y z`, got `" + fields.str() + "`");
  }
  const int64_t last = atoms.batch.empty() ? 0 : atoms.batch.back();
  if (structure != last && structure != last + 1) {
    throw std::runtime_error(at + "structure " + std::to_string(structure) + " after " +
                             std::to_string(last) +
                             " (number structures 0, 1, ... in order, atoms of each together)");
  }
  atoms.batch.push_back(structure);
  atoms.z.push_back(z);
  atoms.pos.insert(atoms.pos.end(), {x, y, w});
}

// The atoms (and cells) of a text file (see the header); std::runtime_error naming the line
// otherwise.
Atoms read_atoms(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw std::runtime_error("cannot read the atoms file " + path);
  Atoms atoms;
  std::string line;
  for (int number = 1; std::getline(file, line); ++number) {
    std::istringstream fields(line);
    std::string first;
    if (!(fields >> first) || first[0] == '#') continue;
    if (first == "cell") {
      read_cell(fields, where(path, number), atoms);
    } else {
      fields.str(line);
      fields.clear();
      read_atom(fields, where(path, number), atoms);
    }
  }
  if (atoms.z.empty()) throw std::runtime_error(path + " holds no atoms");
  const auto structures = static_cast<size_t>(atoms.batch.back() + 1);
  if (!atoms.pbc.empty() && atoms.pbc.size() != 3 * structures) {
    throw std::runtime_error(path + ": " + std::to_string(atoms.pbc.size() / 3) + " cells for " +
                             std::to_string(structures) + " structures (one cell each, or none)");
  }
  return atoms;
}

// The position of the quote that closes the JSON string opened at `open` (npos if none).
size_t closing_quote(const std::string& json, size_t open) {
  for (size_t n = open + 1; n < json.size(); ++n) {
    if (json[n] == '\\') {
      ++n;  // an escaped character
    } else if (json[n] == '"') {
      return n;
    }
  }
  return std::string::npos;
}

// The text of the value that starts at `start`: up to the comma or bracket that ends it.
std::string json_value_at(const std::string& json, size_t start) {
  int inner = 0;
  size_t stop = start;
  for (; stop < json.size(); ++stop) {
    const char c = json[stop];
    if (c == '"') {
      stop = closing_quote(json, stop);
      if (stop == std::string::npos) return "";
    } else if (c == '[' || c == '{') {
      ++inner;
    } else if ((c == ']' || c == '}') && --inner < 0) {
      break;
    } else if (c == ',' && inner == 0) {
      break;
    }
  }
  return json.substr(start, stop - start);
}

// The text of the value of a top-level key of a JSON object ("" if absent): enough of JSON
// for e3nn_pyg's metadata.
std::string json_value(const std::string& json, const std::string& key) {
  int depth = 0;
  for (size_t n = 0; n < json.size(); ++n) {
    const char c = json[n];
    if (c == '"') {
      const size_t end = closing_quote(json, n);
      if (end == std::string::npos) break;
      const size_t colon = json.find_first_not_of(" \n\t", end + 1);
      if (depth == 1 && colon != std::string::npos && json[colon] == ':' &&
          json.compare(n + 1, end - n - 1, key) == 0) {
        return json_value_at(json, json.find_first_not_of(" \n\t", colon + 1));
      }
      n = end;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return "";
}

// The strings of a JSON value ("\"a\"" or "[\"a\", \"b\"]"), escapes left as they are.
std::vector<std::string> json_strings(const std::string& value) {
  std::vector<std::string> strings;
  for (size_t start = value.find('"'); start != std::string::npos;) {
    const size_t end = closing_quote(value, start);
    if (end == std::string::npos) break;
    strings.push_back(value.substr(start + 1, end - start - 1));
    start = value.find('"', end + 1);
  }
  return strings;
}

void print_outputs(const std::vector<at::Tensor>& outputs,
                   const std::vector<std::string>& names) {
  std::cout << std::setprecision(17);
  for (size_t k = 0; k < outputs.size(); ++k) {
    const std::string name = k < names.size() ? names[k] : "output" + std::to_string(k);
    const at::Tensor values = outputs[k].detach().to(at::kDouble).contiguous();
    const at::Tensor rows = values.dim() == 0   ? values.reshape({1, 1})
                            : values.dim() == 1 ? values.unsqueeze(1)
                                                : values.flatten(1);  // [rows, values]
    const double* v = rows.data_ptr<double>();
    for (int64_t i = 0; i < rows.size(0); ++i) {
      std::cout << name << ' ' << i;
      for (int64_t j = 0; j < rows.size(1); ++j) std::cout << ' ' << v[i * rows.size(1) + j];
      std::cout << '\n';
    }
  }
}

// The inputs of a graph-input program: (z, edge_vec, edge_index) of every pair of atoms of a
// structure closer than `cutoff`, both directions, edge_vec = pos[source] - pos[target].
std::vector<at::Tensor> graph_inputs(const at::Tensor& z, const at::Tensor& pos,
                                     const std::vector<int64_t>& batch, double cutoff) {
  const at::Tensor p = pos.to(at::kDouble).contiguous();
  const double* xyz = p.data_ptr<double>();
  std::vector<int64_t> source, target;
  for (size_t i = 0; i < batch.size(); ++i) {
    for (size_t j = 0; j < batch.size(); ++j) {
      const double dx = xyz[3 * j] - xyz[3 * i], dy = xyz[3 * j + 1] - xyz[3 * i + 1];
      const double dz = xyz[3 * j + 2] - xyz[3 * i + 2];
      if (j != i && batch[j] == batch[i] && dx * dx + dy * dy + dz * dz < cutoff * cutoff) {
        source.push_back(static_cast<int64_t>(j));
        target.push_back(static_cast<int64_t>(i));
      }
    }
  }
  const at::Tensor src = at::tensor(source, at::kLong), dst = at::tensor(target, at::kLong);
  const at::Tensor edge_vec = pos.index_select(0, src) - pos.index_select(0, dst);  // [E, 3]
  return {z, edge_vec, at::stack({src, dst})};
}

// Whether the metadata is that of a graph-input package (inputs z, edge_vec, edge_index).
bool graph_interface(const std::string& metadata) {
  return json_strings(json_value(metadata, "interface")) == std::vector<std::string>{"graph"};
}

// The e3nn_pyg metadata of a package (JSON text), after checking that it is one this
// program runs.
std::string package_metadata(torch::inductor::AOTIModelPackageLoader& loader,
                             const std::string& package) {
  const auto metadata = loader.get_metadata();
  const auto found = metadata.find("e3nn_pyg");
  if (found == metadata.end()) {
    throw std::runtime_error(package +
                             " holds no e3nn_pyg metadata (write it with e3nn-pyg export --aoti)");
  }
  return found->second;
}

// The inputs of the package: (z, pos, batch), with (cell, pbc) for a periodic model, or
// (z, edge_vec, edge_index) for a graph-input package.
std::vector<at::Tensor> package_inputs(const std::string& metadata, const Atoms& atoms,
                                       const std::string& package, const std::string& path) {
  const auto dtype = json_strings(json_value(metadata, "dtype"));
  if (dtype.size() != 1 || (dtype[0] != "float32" && dtype[0] != "float64")) {
    throw std::runtime_error(package + ": no float32 or float64 dtype in its metadata");
  }
  const auto real = dtype[0] == "float64" ? at::kDouble : at::kFloat;
  const auto n = static_cast<int64_t>(atoms.z.size());
  const at::Tensor z = at::tensor(atoms.z, at::kLong);
  const at::Tensor pos = at::tensor(atoms.pos, at::kDouble).reshape({n, 3}).to(real);
  const bool graph = graph_interface(metadata);
  const bool periodic = json_value(metadata, "periodic") == "true" && !graph;
  if (periodic && atoms.pbc.empty()) {
    throw std::runtime_error(package + " is periodic: give every structure a cell line");
  }
  if (!periodic && !atoms.pbc.empty()) {
    throw std::runtime_error(path + " has cells, which " + package + " does not take" +
                             (graph ? " (predict gives a graph-input package the pairs of "
                                      "molecules)"
                                    : ""));
  }
  if (graph) {
    return graph_inputs(z, pos, atoms.batch, std::stod(json_value(metadata, "cutoff")));
  }
  std::vector<at::Tensor> inputs = {z, pos, at::tensor(atoms.batch, at::kLong)};
  if (periodic) {
    const auto structures = static_cast<int64_t>(atoms.pbc.size() / 3);
    const std::vector<uint8_t> pbc(atoms.pbc.begin(), atoms.pbc.end());
    inputs.push_back(at::tensor(atoms.cell, at::kDouble).reshape({structures, 3, 3}).to(real));
    inputs.push_back(at::tensor(pbc, at::kByte).to(at::kBool).reshape({structures, 3}));
  }
  return inputs;
}

int run(const std::string& operators, const std::string& package, const std::string& path) {
  // RTLD_GLOBAL: the operators register themselves with the dispatcher when loaded
  if (dlopen(operators.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    throw std::runtime_error("cannot load the operator library " + operators + ": " + dlerror());
  }
  torch::inductor::AOTIModelPackageLoader loader(package);
  const std::string metadata = package_metadata(loader, package);
  const Atoms atoms = read_atoms(path);
  const auto inputs = package_inputs(metadata, atoms, package, path);
  print_outputs(loader.run(inputs), json_strings(json_value(metadata, "outputs")));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " OPERATORS.so PACKAGE.pt2 ATOMS.txt\n";
    return 2;
  }
  try {
    return run(argv[1], argv[2], argv[3]);
  } catch (const c10::Error& error) {
    std::cerr << "predict: " << error.what_without_backtrace() << '\n';
  } catch (const std::exception& error) {
    std::cerr << "predict: " << error.what() << '\n';
  }
  return 1;
}

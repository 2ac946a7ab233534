// HookHandle: what registering a hook returns (a tensor's post-accumulate hook, a model's block
// wrapper). The hook stays registered while the handle lives: destroying the handle, or calling
// remove(), unregisters it. Removing is idempotent and safe after the registry itself is gone.
#pragma once

#include <functional>
#include <utility>

namespace loom {

class [[nodiscard]] HookHandle {
 public:
  HookHandle() = default;
  explicit HookHandle(std::function<void()> remover) : remover_(std::move(remover)) {}
  HookHandle(HookHandle&& other) noexcept : remover_(std::exchange(other.remover_, nullptr)) {}
  HookHandle& operator=(HookHandle&& other) noexcept {
    if (this != &other) {
      remove();
      remover_ = std::exchange(other.remover_, nullptr);
    }
    return *this;
  }
  HookHandle(const HookHandle&) = delete;
  HookHandle& operator=(const HookHandle&) = delete;
  ~HookHandle() { remove(); }

  void remove() {
    if (auto f = std::exchange(remover_, nullptr)) f();
  }
  bool active() const { return remover_ != nullptr; }

 private:
  std::function<void()> remover_;
};

}  // namespace loom

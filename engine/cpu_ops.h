/*
 * cpu_ops.h - internal: the CPU backend's ops one at a time, for tests/engine/test_cpu_ops.c.
 *
 * The backend runs whole plans (cpu_model.c); to test each op against a C reference, a test
 * describes a model of one or two layers by hand (the description part of struct eng_model, as
 * graph.c would), creates its state with eng_backend_cpu.model_init and runs the plan's forward
 * and backward steps exactly as a training step runs them, with the loss and the optimizer as
 * separate calls. Activations are exchanged in plain layout (NCHW, or NC where oneDNN's format
 * has two dimensions) through reorders; not for use inside the training loop.
 */
#ifndef CWT_ENGINE_CPU_OPS_H
#define CWT_ENGINE_CPU_OPS_H

#include "engine/model.h"

/* Runs the forward steps of the plan for batch size n (built on first use): inference when
 * predict, else training (batch statistics, running statistics updated, dropout masks of step
 * m->step). The input activation must be written first. Returns 0 or a CWT_E* code. */
int cpu_ops_forward(struct eng_model *m, uint32_t n, int predict);

/* Runs the backward steps of the training plan for batch size n, after cpu_ops_forward(m, n, 0)
 * and with the logits activation's gradient written: every parameter gradient and every
 * activation gradient that training computes. */
int cpu_ops_backward(struct eng_model *m, uint32_t n);

/* Copies activation a's value (grad = 0) or gradient (grad = 1) in the (n, predict) plan's
 * format to plain (write = 0) or from plain (write = 1); plain holds n * c * h * w floats in
 * NCHW order. Builds the plan if needed; CWT_ESTATE for a gradient that is not kept. */
int cpu_ops_act(struct eng_model *m, uint32_t n, int predict, int a, int grad, float *plain,
                int write);

/* Tensor i's flat array in region r (REG_GRAD: its gradient; optimizer regions: its state),
 * PyTorch layout. */
float *cpu_ops_tensor(struct eng_model *m, uint32_t i, enum eng_region r);

/* The loss of a training step on logits z[n][classes] with labels and class weights cw (NULL:
 * all 1): dz (n * classes floats) gets the gradient of the mean loss. */
void cpu_ops_loss(struct eng_model *m, uint32_t n, const uint32_t *labels, const float *cw,
                  const float *z, float *dz, float *loss, uint32_t *correct);

/* One optimizer step over every parameter with learning rate lr and Adam's bias corrections
 * bc1 = 1 / (1 - beta1^t), bc2 = 1 / (1 - beta2^t) (ignored by SGD). */
void cpu_ops_optimize(struct eng_model *m, float lr, float bc1, float bc2);

#endif

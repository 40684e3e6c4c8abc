/*
 * train_schedule.c - learning-rate schedules, computed on the CPU for every step.
 */
#include <math.h>

#include "engine/train/train.h"

double train_lr_at(const struct cwt_recipe *r, double t, double total_epochs)
{
    double span = r->lr - r->lr_min;

    if (t < 0)
        t = 0;
    switch (r->schedule) {
    case CWT_LR_STEP:
        if (r->step_epochs <= 0)
            return r->lr;
        return r->lr * pow(r->gamma, floor(t / r->step_epochs));
    case CWT_LR_COSINE:
        if (total_epochs <= 0)
            return r->lr;
        if (t > total_epochs)
            t = total_epochs;
        return r->lr_min + span * (1.0 + cos(M_PI * t / total_epochs)) / 2.0;
    case CWT_LR_CYCLICAL: {
        double phase;
        if (r->cycle_epochs <= 0)
            return r->lr;
        phase = fmod(t / r->cycle_epochs, 2.0);
        return r->lr_min + span * (phase <= 1.0 ? phase : 2.0 - phase);
    }
    case CWT_LR_CONSTANT:
    default:
        return r->lr;
    }
}
